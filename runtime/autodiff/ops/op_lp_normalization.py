"""LpNormalization (axis, p = 1 or 2): Y = X / n with n the p-norm along the axis.
p = 2: dX = (dY - Y * sum(dY * Y)) / n; p = 1: dX = (dY - sign(X) * sum(dY * Y)) / n
(n = 0, where X is all zeros and has no derivative: dX = dY)."""
from onnxforge.runtime.autodiff.ops._common import attr, reduce

OP_TYPE = "LpNormalization"


def check(node, info):
    p = attr(node, "p", 2)
    return None if p in (1, 2) else f"p={p} is not covered (1 and 2 are)"


def vjp(ctx, node, dys, need):
    x, y, g = node.input[0], node.output[0], dys[0]
    axis = attr(node, "axis", -1)
    if attr(node, "p", 2) == 2:
        n = ctx.op("Sqrt", [reduce(ctx, "ReduceSum", ctx.op("Mul", [x, x]), [axis])])
        dirn = y
    else:
        n = reduce(ctx, "ReduceSum", ctx.op("Abs", [x]), [axis])
        dirn = ctx.op("Sign", [x])
    zero = ctx.op("Equal", [n, ctx.scalar(0.0, x)])
    n = ctx.op("Where", [zero, ctx.scalar(1.0, x), n])
    s = reduce(ctx, "ReduceSum", ctx.op("Mul", [g, y]), [axis])
    return [ctx.like(ctx.op("Div", [ctx.op("Sub", [g, ctx.op("Mul", [dirn, s])]), n]), x)]
