"""ReverseSequence (the first sequence_lens steps of each batch entry reversed): every output element is a copy of one element of X, so dX is dY added back
where each came from (see _common.index_adjoint; repeats and duplicate picks accumulate)."""
from onnxforge.runtime.autodiff.ops._common import index_adjoint

OP_TYPE = "ReverseSequence"
NON_DIFFERENTIABLE_INPUTS = (1,)


def vjp(ctx, node, dys, need):
    return [index_adjoint(ctx, node, dys[0])] + [None] * (len(node.input) - 1)
