"""Sqrt: dX = dY / (2 Y)."""
OP_TYPE = "Sqrt"


def vjp(ctx, node, dys, need):
    g = dys[0]
    half = ctx.op("Mul", [g, ctx.scalar(0.5, g)])
    return [ctx.like(ctx.op("Div", [half, node.output[0]]), g)]
