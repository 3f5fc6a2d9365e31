"""DepthToSpace (channels moved into blocks of space): every output element is a copy of one element of X, so dX is dY added back
where each came from (see _common.index_adjoint; repeats and duplicate picks accumulate)."""
from onnxforge.runtime.autodiff.ops._common import index_adjoint

OP_TYPE = "DepthToSpace"
NON_DIFFERENTIABLE_INPUTS = ()


def vjp(ctx, node, dys, need):
    return [index_adjoint(ctx, node, dys[0])] + [None] * (len(node.input) - 1)
