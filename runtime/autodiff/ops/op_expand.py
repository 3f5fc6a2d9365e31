"""Expand: dX = dY summed back to X's shape."""
OP_TYPE = "Expand"
NON_DIFFERENTIABLE_INPUTS = (1,)


def vjp(ctx, node, dys, need):
    return [ctx.reduce_to(dys[0], node.input[0], ctx.dims(node.output[0])), None]
