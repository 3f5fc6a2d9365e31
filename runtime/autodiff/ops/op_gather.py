"""Gather (axis): dData is dY added at the gathered positions (duplicates accumulate).

Axis 0 (embeddings): ScatterND with reduction "add" into zeros of the data's shape, the indices
made non-negative first (Mod by a 0-d dim, so a scalar index stays 0-d and its update, one row
of dY without the gathered axis, matches ScatterND's indices.shape[:-1] + data.shape[1:]).
Other axes (and a negative axis of a tensor whose rank is known only at run time): the same Gather applied to the flat index grid of the data, then ScatterElements
"add" into a flat zero tensor."""
import numpy as np
from onnx import numpy_helper

from onnxforge.runtime.autodiff.ops._common import attr

OP_TYPE = "Gather"
NON_DIFFERENTIABLE_INPUTS = (1,)


def vjp(ctx, node, dys, need):
    data, idx = node.input
    g = dys[0]
    axis = attr(node, "axis", 0)
    r = ctx.rank(data)
    if axis < 0 and r is not None:
        axis += r
    if axis == 0:
        i64 = idx if ctx.elem(idx) == 7 else ctx.op("Cast", [idx], to=7)
        v = ctx.value(idx)
        if v is None or (np.asarray(v) < 0).any():
            i64 = ctx.op("Mod", [i64, _dim0(ctx, data)])
        idx_nd = ctx.op("Unsqueeze", [i64, ctx.ints([-1])])
        out = ctx.op("ScatterND", [ctx.zeros_like(data), idx_nd, g], reduction="add")
        return [ctx.like(out, data), None]
    shape = ctx.shape(data)
    size = ctx.op("ReduceProd", [shape], keepdims=0)
    zero, one = ctx.const(np.array(0, np.int64)), ctx.const(np.array(1, np.int64))
    grid = ctx.op("Reshape", [ctx.op("Range", [zero, size, one]), shape])
    picked = ctx.op("Gather", [grid, idx], axis=axis)
    flat = ctx.ints([-1])
    zeros = ctx.op("ConstantOfShape", [ctx.op("Reshape", [size, ctx.ints([1])])],
                   value=numpy_helper.from_array(np.zeros(1, ctx.np_dtype(g))))
    scattered = ctx.op("ScatterElements", [zeros, ctx.op("Reshape", [picked, flat]), ctx.op("Reshape", [g, flat])],
                       axis=0, reduction="add")
    return [ctx.like(ctx.op("Reshape", [scattered, ctx.target_shape(data)]), data), None]


def _dim0(ctx, data):
    """The data's first dim as a 0-d int64 (a constant when known): Mod by it keeps the index's rank."""
    d = (ctx.dims(data) or [None])[0]
    if isinstance(d, int):
        return ctx.const(np.array(d, np.int64))
    return ctx.op("Squeeze", [ctx.shape(data, 0, 1), ctx.ints([0])])
