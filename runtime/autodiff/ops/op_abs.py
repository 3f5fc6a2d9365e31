"""Abs: dX = dY * sign(X) (0 at 0, as PyTorch)."""
OP_TYPE = "Abs"


def vjp(ctx, node, dys, need):
    return [ctx.like(ctx.op("Mul", [dys[0], ctx.op("Sign", [node.input[0]])]), dys[0])]
