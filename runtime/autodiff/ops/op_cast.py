"""Cast (to): dX = Cast(dY, to=type of X) for a float X (integer and bool inputs carry none)."""
OP_TYPE = "Cast"


def vjp(ctx, node, dys, need):
    x, g = node.input[0], dys[0]
    if ctx.elem(x) == ctx.elem(g):
        return [g]
    return [ctx.like(ctx.op("Cast", [g], to=ctx.elem(x)), x)]
