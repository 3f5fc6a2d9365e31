"""SequenceInsert (position, default: the end): the inserted tensor's cotangent is dS at the
position it took, the sequence's is dS without it (SequenceErase there). A negative position p
of an n-element sequence puts the tensor at p + n."""
import numpy as np

from onnxforge.runtime.autodiff.ops._sequence import normalized_position

OP_TYPE = "SequenceInsert"
NON_TENSOR = True  # reads or writes sequences of tensors
NON_DIFFERENTIABLE_INPUTS = (2,)


def vjp(ctx, node, dys, need):
    seq, x = node.input[0], node.input[1]
    ds = dys[0]
    if len(node.input) > 2 and node.input[2]:
        p = normalized_position(ctx, seq, node.input[2])
    else:
        p = ctx.const(np.array(-1, np.int64))
    out = [None] * len(node.input)
    if need[0]:
        out[0] = ctx.mark_sequence(ctx.op("SequenceErase", [ds, p]), ctx.elem(seq))
    if need[1]:
        out[1] = ctx.like(ctx.op("SequenceAt", [ds, p]), x)
    return out
