"""TopK(X, K) (axis, largest, sorted) -> Values, Indices: dX is dValues added at Indices along
the axis (ScatterElements "add" into zeros). Indices are integers: they carry no gradient."""
from onnxforge.runtime.autodiff.ops._common import attr

OP_TYPE = "TopK"
NON_DIFFERENTIABLE_INPUTS = (1,)


def vjp(ctx, node, dys, need):
    x = node.input[0]
    idx = ctx.ensure_output(node, 1, "topk_indices")
    out = ctx.op("ScatterElements", [ctx.zeros_like(x), idx, dys[0]], axis=attr(node, "axis", -1), reduction="add")
    return [ctx.like(out, x), None]
