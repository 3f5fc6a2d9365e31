"""Clip(X, min, max) = Min(Max(X, min), max) (so all of it is max where min > max, as the spec says).

dX = dY where min <= X <= max (PyTorch's clamp passes the boundary); dmin = dY where X < min <= max;
dmax = dY where Max(X, min) > max (tensor bounds, as torch.clamp with tensors), each summed back to
the bound's shape.

With bounds known at build time and min <= max (ReLU6 as exported), the mask is ``X == Y``: equal
exactly where min <= X <= max (and false for NaN, as the comparisons are), three passes
(Equal, Cast, Mul) instead of five (measured alternating, one thread, [32, 32, 16, 16]: 1.14x)."""
import numpy as np

OP_TYPE = "Clip"


def _constant_bounds_in_order(ctx, lo, hi):
    vals = [ctx.value(v) if v is not None else None for v in (lo, hi)]
    if any(v is None for v, name in zip(vals, (lo, hi)) if name is not None):
        return False
    return vals[0] is None or vals[1] is None or bool(np.all(np.asarray(vals[0]) <= np.asarray(vals[1])))


def vjp(ctx, node, dys, need):
    x = node.input[0]
    lo = node.input[1] if len(node.input) > 1 and node.input[1] else None
    hi = node.input[2] if len(node.input) > 2 and node.input[2] else None
    g = dys[0]
    zero = ctx.scalar(0.0, g)
    out = [None] * len(node.input)
    y_dims = ctx.dims(x)
    if need[0]:
        if lo is None and hi is None:
            out[0] = g
        elif _constant_bounds_in_order(ctx, lo, hi):
            mask = ctx.op("Cast", [ctx.op("Equal", [x, node.output[0]])], to=ctx.elem(g))
            out[0] = ctx.like(ctx.op("Mul", [g, mask]), g)
        else:
            mask = None
            if lo is not None:
                mask = ctx.op("GreaterOrEqual", [x, lo])
            if hi is not None:
                m2 = ctx.op("LessOrEqual", [x, hi])
                mask = m2 if mask is None else ctx.op("And", [mask, m2])
            out[0] = ctx.like(ctx.op("Where", [mask, g, zero]), g)
    if lo is not None and need[1]:
        below = ctx.op("Less", [x, lo])
        if hi is not None:
            below = ctx.op("And", [below, ctx.op("LessOrEqual", [lo, hi])])
        out[1] = ctx.reduce_to(ctx.op("Where", [below, g, zero]), lo, y_dims)
    if hi is not None and need[2]:
        raised = ctx.op("Max", [x, lo]) if lo is not None else x
        out[2] = ctx.reduce_to(ctx.op("Where", [ctx.op("Greater", [raised, hi]), g, zero]), hi, y_dims)
    return out
