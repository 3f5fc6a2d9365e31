"""Identity: dX = dY."""
OP_TYPE = "Identity"


def vjp(ctx, node, dys, need):
    return [dys[0]]
