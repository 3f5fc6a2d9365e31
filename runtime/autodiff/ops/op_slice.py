"""Slice (starts, ends, axes, steps as inputs): dX is dY scattered back into zeros.

With steps of 1, the bounds and the sliced axes' dims known at build time (other dims, the batch's,
may be symbolic), one Pad; otherwise (negative or other steps,
shapes known only at run time) the same Slice is applied to the flat index grid of X and dY is
added into a flat zero tensor at those indices (ScatterElements, reduction "add"), which is
exact for every form of Slice. (Measured on ShuffleNetV2's channel split, batch symbolic: the
ScatterElements form was 2.7% of the step; see docs/notes/training-speed.md.)"""
import numpy as np

OP_TYPE = "Slice"
NON_DIFFERENTIABLE_INPUTS = (1, 2, 3, 4)


def _static_pads(ctx, node):
    x = node.input[0]
    dims = ctx.dims(x)
    vals = [ctx.value(i) if i else None for i in node.input[1:]]
    if dims is None or vals[0] is None or vals[1] is None:
        return None
    if len(node.input) > 3 and node.input[3] and vals[2] is None:
        return None
    if len(node.input) > 4 and node.input[4] and vals[3] is None:
        return None
    r = len(dims)
    starts, ends = list(vals[0]), list(vals[1])
    axes = list(vals[2]) if len(vals) > 2 and vals[2] is not None else list(range(len(starts)))
    steps = list(vals[3]) if len(vals) > 3 and vals[3] is not None else [1] * len(starts)
    if any(s != 1 for s in steps):
        return None
    before, after = [0] * r, [0] * r
    for s, e, a in zip(starts, ends, axes):
        a = int(a) + r if a < 0 else int(a)
        d = dims[a]
        if not isinstance(d, int):
            return None
        s = int(s) + d if s < 0 else int(s)
        e = int(e) + d if e < 0 else int(e)
        s, e = min(max(s, 0), d), min(max(e, 0), d)
        e = max(e, s)
        before[a], after[a] = s, d - e
    return before + after


def vjp(ctx, node, dys, need):
    x, g = node.input[0], dys[0]
    pads = _static_pads(ctx, node)
    if pads is not None:
        out = ctx.op("Pad", [g, ctx.ints(pads)]) if any(pads) else g
        return [ctx.like(out, x)] + [None] * (len(node.input) - 1)
    shape = ctx.shape(x)
    size = ctx.op("ReduceProd", [shape], keepdims=0)
    zero, one = ctx.const(np.array(0, np.int64)), ctx.const(np.array(1, np.int64))
    grid = ctx.op("Reshape", [ctx.op("Range", [zero, size, one]), shape])
    picked = ctx.op("Slice", [grid] + list(node.input[1:]))
    flat = ctx.ints([-1])
    zeros = ctx.op("ConstantOfShape", [ctx.op("Reshape", [size, ctx.ints([1])])],
                   value=__import__("onnx").numpy_helper.from_array(np.zeros(1, ctx.np_dtype(g))))
    scattered = ctx.op("ScatterElements", [zeros, ctx.op("Reshape", [picked, flat]), ctx.op("Reshape", [g, flat])],
                       axis=0, reduction="add")
    return [ctx.like(ctx.op("Reshape", [scattered, ctx.target_shape(x)]), x)] + [None] * (len(node.input) - 1)
