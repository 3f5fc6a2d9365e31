"""ReduceSum (axes as input from opset 13, keepdims, noop_with_empty_axes): dX is dY with the
reduced axes restored (Unsqueeze when keepdims=0) and broadcast back to X's shape (Expand)."""
from onnxforge.runtime.autodiff.ops import _reduce

OP_TYPE = "ReduceSum"
NON_DIFFERENTIABLE_INPUTS = (1,)


def vjp(ctx, node, dys, need):
    return _reduce.vjp(ctx, node, dys, need, mean=False)
