"""Where(condition, X, Y): dX = dOut where condition, dY = dOut elsewhere, each summed back
to its shape (the condition is boolean and carries no gradient)."""
OP_TYPE = "Where"
NON_DIFFERENTIABLE_INPUTS = (0,)


def vjp(ctx, node, dys, need):
    c, x, y = node.input
    g = dys[0]
    out_dims = ctx.dims(node.output[0])
    zero = ctx.scalar(0.0, g)
    out = [None, None, None]
    if need[1]:
        out[1] = ctx.reduce_to(ctx.op("Where", [c, g, zero]), x, out_dims)
    if need[2]:
        out[2] = ctx.reduce_to(ctx.op("Where", [c, zero, g]), y, out_dims)
    return out
