"""ConcatFromSequence (axis, new_axis): dS = SplitToSequence(dY) along the axis, by the lengths the
tensors had there (read per element in a Loop); with new_axis=1 each piece is one slice, squeezed
(keepdims=0)."""
from onnx import TensorProto

from onnxforge.runtime.autodiff.ops import _sequence
from onnxforge.runtime.autodiff.ops._common import attr

OP_TYPE = "ConcatFromSequence"
NON_TENSOR = True  # reads or writes sequences of tensors


def vjp(ctx, node, dys, need):
    seq, g = node.input[0], dys[0]
    axis = attr(node, "axis")
    if attr(node, "new_axis", 0):
        ds = ctx.op("SplitToSequence", [g], axis=axis, keepdims=0)
    else:
        def length(i, x):
            a = ctx.op("Shape", [x], elem=TensorProto.INT64)
            return ctx.op("Gather", [a, ctx.ints([axis])], elem=TensorProto.INT64)  # [1]: onnx.reference
        # stacks 0-d loop outputs as [n, 1] (np.vstack), ONNX Runtime as [n]; [1] each is [n, 1] in both
        stacked = _sequence.map_sequence(ctx, seq, TensorProto.INT64, length, out_sequence=False)
        sizes = ctx.op("Reshape", [stacked, ctx.ints([-1])], elem=TensorProto.INT64)
        ds = ctx.op("SplitToSequence", [g, sizes], axis=axis)
    return [ctx.mark_sequence(ds, ctx.elem(g))]
