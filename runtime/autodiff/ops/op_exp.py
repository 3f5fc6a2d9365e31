"""Exp: dX = dY * Y."""
OP_TYPE = "Exp"


def vjp(ctx, node, dys, need):
    return [ctx.like(ctx.op("Mul", [dys[0], node.output[0]]), dys[0])]
