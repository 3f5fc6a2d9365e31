"""Range(start, limit, delta): Y[i] = start + i * delta for i < ceil((limit - start) / delta).

d start = sum(dY), d delta = sum(dY * i); the length is piecewise constant in ``limit`` (and the
others), so d limit = 0 (the derivative wherever it exists). Integer ranges carry no gradient."""
import numpy as np

from onnxforge.runtime.autodiff.ops._rule import ZERO

OP_TYPE = "Range"


def vjp(ctx, node, dys, need):
    g = dys[0]
    out = [None, ZERO if need[1] else None, None]
    if need[0]:
        out[0] = ctx.like(ctx.op("ReduceSum", [g], keepdims=0), node.input[0])
    if need[2]:
        n = ctx.op("Squeeze", [ctx.shape(g), ctx.ints([0])])
        i = ctx.op("Cast", [ctx.op("Range", [ctx.const(np.array(0, np.int64)), n, ctx.const(np.array(1, np.int64))])],
                   to=ctx.elem(g))
        out[2] = ctx.like(ctx.op("ReduceSum", [ctx.op("Mul", [g, i])], keepdims=0), node.input[2])
    return out
