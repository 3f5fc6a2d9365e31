"""OneHot(indices, depth, values=[off, on]) (axis): Y = on where the index hits, off elsewhere,
linear in ``values``: d off = sum(dY * (1 - hit)), d on = sum(dY * hit), with ``hit`` the same
OneHot with values [0, 1]. Indices and depth (integers, or floats read as integers) are
piecewise constant: their gradient is zero."""
import numpy as np

from onnxforge.runtime.autodiff.ops._common import attr
from onnxforge.runtime.autodiff.ops._rule import ZERO

OP_TYPE = "OneHot"


def vjp(ctx, node, dys, need):
    indices, depth, values = node.input[:3]
    g = dys[0]
    hit = ctx.op("OneHot", [indices, depth, ctx.const(np.array([0, 1], ctx.np_dtype(g)))], axis=attr(node, "axis", -1))
    on = ctx.op("ReduceSum", [ctx.op("Mul", [g, hit])], keepdims=0)
    total = ctx.op("ReduceSum", [g], keepdims=0)
    off = ctx.op("Sub", [total, on])
    d = ctx.op("Concat", [ctx.op("Unsqueeze", [off, ctx.ints([0])]), ctx.op("Unsqueeze", [on, ctx.ints([0])])], axis=0)
    zero = [ZERO if n else None for n in need[:2]]
    return zero + [ctx.like(ctx.op("Reshape", [d, ctx.shape(values)]), values) if need[2] else None]
