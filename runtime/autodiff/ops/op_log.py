"""Log: dX = dY / X."""
OP_TYPE = "Log"


def vjp(ctx, node, dys, need):
    return [ctx.like(ctx.op("Div", [dys[0], node.input[0]]), dys[0])]
