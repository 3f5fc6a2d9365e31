"""SequenceErase (position, default: the last): dS_in is dS_out with zeros put back where the
erased tensor was (SequenceInsert of zeros shaped like it)."""
import numpy as np
from onnx import numpy_helper

from onnxforge.runtime.autodiff.ops._sequence import insert, normalized_position

OP_TYPE = "SequenceErase"
NON_TENSOR = True  # reads or writes sequences of tensors
NON_DIFFERENTIABLE_INPUTS = (1,)


def vjp(ctx, node, dys, need):
    seq = node.input[0]
    at = node.input[1] if len(node.input) > 1 and node.input[1] else None
    p = normalized_position(ctx, seq, at) if at else ctx.const(np.array(-1, np.int64))
    gone = ctx.op("SequenceAt", [seq, p], elem=ctx.elem(seq))
    zero = ctx.op("ConstantOfShape", [ctx.op("Shape", [gone])],
                  value=numpy_helper.from_array(np.zeros(1, ctx.np_dtype(seq))), elem=ctx.elem(seq))
    if at:
        ds = insert(ctx, dys[0], zero, p)
    else:
        ds = ctx.mark_sequence(ctx.op("SequenceInsert", [dys[0], zero]), ctx.elem(seq))
    return [ds] + [None] * (len(node.input) - 1)
