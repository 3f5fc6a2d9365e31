"""ScatterND (reduction none/add): see _scatter."""
from onnxforge.runtime.autodiff.ops import _scatter

OP_TYPE = "ScatterND"
NON_DIFFERENTIABLE_INPUTS = (1,)
check = _scatter.check


def vjp(ctx, node, dys, need):
    return _scatter.vjp(ctx, node, dys, need, "GatherND")
