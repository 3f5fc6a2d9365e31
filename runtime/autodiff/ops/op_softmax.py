"""Softmax (axis, default -1 from opset 13): dX = Y * (dY - sum(dY * Y, axis)).

Where the model itself masks Y (a Where branch or IsNaN reads it, through Casts: Attention's body
replaces a row masked whole, all -inf, so NaN, by 0), the output does not depend on a NaN row:
its gradient is 0, not the NaN the formula gives (0 * NaN). Elsewhere a NaN row reaches the loss
anyway, and no guard is paid for."""
from onnxforge.runtime.autodiff.ops._common import attr

OP_TYPE = "Softmax"


def vjp(ctx, node, dys, need):
    y, g = node.output[0], dys[0]
    axis = attr(node, "axis", -1)
    gy = ctx.op("Mul", [g, y])
    s = ctx.op("ReduceSum", [gy, ctx.ints([axis])], keepdims=1)
    dx = ctx.op("Mul", [y, ctx.op("Sub", [g, s])])
    if y in ctx.nan_checked:
        dx = ctx.op("Where", [ctx.op("IsNaN", [y]), ctx.scalar(0.0, g), dx])
    return [ctx.like(dx, g)]
