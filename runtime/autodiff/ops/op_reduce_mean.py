"""ReduceMean (axes an attribute before opset 18, an input from 18): as ReduceSum, divided by
the number of elements averaged (the ratio of the input and output sizes)."""
from onnxforge.runtime.autodiff.ops import _reduce

OP_TYPE = "ReduceMean"
NON_DIFFERENTIABLE_INPUTS = (1,)


def vjp(ctx, node, dys, need):
    return _reduce.vjp(ctx, node, dys, need, mean=True)
