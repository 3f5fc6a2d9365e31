"""PRelu(X, slope) (slope broadcast to X): Y = X where X > 0, slope * X elsewhere.
dX = dY where X > 0, dY * slope elsewhere; dslope = dY * X where X <= 0, summed to its shape."""
OP_TYPE = "PRelu"


def vjp(ctx, node, dys, need):
    x, slope = node.input
    g = dys[0]
    pos = ctx.op("Greater", [x, ctx.scalar(0.0, x)])
    zero = ctx.scalar(0.0, g)
    out = [None, None]
    if need[0]:
        out[0] = ctx.like(ctx.op("Where", [pos, g, ctx.op("Mul", [g, slope])]), x)
    if need[1]:
        gs = ctx.op("Where", [pos, zero, ctx.op("Mul", [g, x])], dims=ctx.dims(x))
        out[1] = ctx.reduce_to(gs, slope, ctx.dims(x))
    return out
