"""ScatterElements (axis, reduction none/add): see _scatter."""
from onnxforge.runtime.autodiff.ops import _scatter
from onnxforge.runtime.autodiff.ops._common import attr

OP_TYPE = "ScatterElements"
NON_DIFFERENTIABLE_INPUTS = (1,)
check = _scatter.check


def vjp(ctx, node, dys, need):
    return _scatter.vjp(ctx, node, dys, need, "GatherElements", axis=attr(node, "axis", 0))
