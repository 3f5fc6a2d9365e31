"""GlobalAveragePool: dX = dY broadcast over the spatial axes, divided by their size."""
OP_TYPE = "GlobalAveragePool"


def vjp(ctx, node, dys, need):
    x, g = node.input[0], dys[0]
    dims = ctx.static_dims(x)
    e = ctx.op("Expand", [g, ctx.shape(x)])
    if dims is not None:
        count = 1
        for d in dims[2:]:
            count *= d
        out = ctx.op("Mul", [e, ctx.scalar(1.0 / count, g)])
    else:
        spatial = ctx.op("ReduceProd", [ctx.shape(x, 2)], keepdims=0)
        out = ctx.op("Div", [e, ctx.op("Cast", [spatial], to=ctx.elem(g))])
    return [ctx.like(out, x)]
