"""SequenceAt: the sequence's cotangent is dY at the position, zeros elsewhere (an ``At`` entry,
summed in place by _sequence.total)."""
from onnxforge.runtime.autodiff.ops._sequence import At

OP_TYPE = "SequenceAt"
NON_TENSOR = True  # reads or writes sequences of tensors
NON_DIFFERENTIABLE_INPUTS = (1,)


def vjp(ctx, node, dys, need):
    seq, position = node.input
    ctx.mark_sequence(seq)
    return [At(position, dys[0]), None]
