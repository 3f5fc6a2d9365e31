"""LogSoftmax (axis, default -1 from opset 13): dX = dY - exp(Y) * sum(dY, axis)."""
from onnxforge.runtime.autodiff.ops._common import attr

OP_TYPE = "LogSoftmax"


def vjp(ctx, node, dys, need):
    y, g = node.output[0], dys[0]
    axis = attr(node, "axis", -1)
    s = ctx.op("ReduceSum", [g, ctx.ints([axis])], keepdims=1)
    return [ctx.like(ctx.op("Sub", [g, ctx.op("Mul", [ctx.op("Exp", [y]), s])]), g)]
