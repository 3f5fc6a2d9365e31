"""Clip(X, min, max) = Min(Max(X, min), max) (so all of it is max where min > max, as the spec says).

dX = dY where min <= X <= max (PyTorch's clamp passes the boundary); dmin = dY where X < min <= max;
dmax = dY where Max(X, min) > max (tensor bounds, as torch.clamp with tensors), each summed back to
the bound's shape."""
OP_TYPE = "Clip"


def vjp(ctx, node, dys, need):
    x = node.input[0]
    lo = node.input[1] if len(node.input) > 1 and node.input[1] else None
    hi = node.input[2] if len(node.input) > 2 and node.input[2] else None
    g = dys[0]
    zero = ctx.scalar(0.0, g)
    out = [None] * len(node.input)
    y_dims = ctx.dims(x)
    if need[0]:
        mask = None
        if lo is not None:
            mask = ctx.op("GreaterOrEqual", [x, lo])
        if hi is not None:
            m2 = ctx.op("LessOrEqual", [x, hi])
            mask = m2 if mask is None else ctx.op("And", [mask, m2])
        out[0] = g if mask is None else ctx.like(ctx.op("Where", [mask, g, zero]), g)
    if lo is not None and need[1]:
        below = ctx.op("Less", [x, lo])
        if hi is not None:
            below = ctx.op("And", [below, ctx.op("LessOrEqual", [lo, hi])])
        out[1] = ctx.reduce_to(ctx.op("Where", [below, g, zero]), lo, y_dims)
    if hi is not None and need[2]:
        raised = ctx.op("Max", [x, lo]) if lo is not None else x
        out[2] = ctx.reduce_to(ctx.op("Where", [ctx.op("Greater", [raised, hi]), g, zero]), hi, y_dims)
    return out
