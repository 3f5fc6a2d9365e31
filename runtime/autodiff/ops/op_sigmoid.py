"""Sigmoid: dX = dY * Y * (1 - Y)."""
OP_TYPE = "Sigmoid"


def vjp(ctx, node, dys, need):
    y, g = node.output[0], dys[0]
    one_minus = ctx.op("Sub", [ctx.scalar(1.0, y), y])
    return [ctx.like(ctx.op("Mul", [ctx.op("Mul", [g, y]), one_minus]), g)]
