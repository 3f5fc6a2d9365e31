"""Tanh: dX = dY * (1 - Y^2)."""
OP_TYPE = "Tanh"


def vjp(ctx, node, dys, need):
    y, g = node.output[0], dys[0]
    one_minus = ctx.op("Sub", [ctx.scalar(1.0, y), ctx.op("Mul", [y, y])])
    return [ctx.like(ctx.op("Mul", [g, one_minus]), g)]
