"""Reciprocal: Y = 1/X, dX = -dY * Y^2."""
OP_TYPE = "Reciprocal"


def vjp(ctx, node, dys, need):
    y = node.output[0]
    sq = ctx.op("Mul", [y, y])
    return [ctx.like(ctx.op("Neg", [ctx.op("Mul", [dys[0], sq])]), dys[0])]
