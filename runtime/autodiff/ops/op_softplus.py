"""Softplus: Y = log(1 + exp(X)), dX = dY * sigmoid(X)."""
OP_TYPE = "Softplus"


def vjp(ctx, node, dys, need):
    return [ctx.like(ctx.op("Mul", [dys[0], ctx.op("Sigmoid", [node.input[0]])]), dys[0])]
