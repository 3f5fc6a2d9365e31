"""Sum (variadic, broadcasting): every input gets dY summed back to its shape."""
OP_TYPE = "Sum"


def vjp(ctx, node, dys, need):
    y_dims = ctx.dims(node.output[0])
    return [ctx.reduce_to(dys[0], x, y_dims) if n else None for x, n in zip(node.input, need)]
