"""GatherElements (axis): dData is dY added at the gathered positions (duplicates accumulate):
ScatterElements with reduction "add" into zeros of the data's shape, along the same axis with
the same indices (its indices have the output's shape, as ScatterElements' updates do)."""
from onnxforge.runtime.autodiff.ops._common import attr

OP_TYPE = "GatherElements"
NON_DIFFERENTIABLE_INPUTS = (1,)


def vjp(ctx, node, dys, need):
    data, idx = node.input
    out = ctx.op("ScatterElements", [ctx.zeros_like(data), idx, dys[0]], axis=attr(node, "axis", 0), reduction="add")
    return [ctx.like(out, data), None]
