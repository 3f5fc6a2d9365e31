"""Softmax (axis, default -1 from opset 13): dX = Y * (dY - sum(dY * Y, axis))."""
from onnxforge.runtime.autodiff.ops._common import attr

OP_TYPE = "Softmax"


def vjp(ctx, node, dys, need):
    y, g = node.output[0], dys[0]
    axis = attr(node, "axis", -1)
    gy = ctx.op("Mul", [g, y])
    s = ctx.op("ReduceSum", [gy, ctx.ints([axis])], keepdims=1)
    return [ctx.like(ctx.op("Mul", [y, ctx.op("Sub", [g, s])]), g)]
