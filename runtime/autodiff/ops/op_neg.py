"""Neg: Y = -X."""
OP_TYPE = "Neg"


def vjp(ctx, node, dys, need):
    return [ctx.like(ctx.op("Neg", [dys[0]]), dys[0])]
