"""LeakyRelu (alpha, default 0.01): dX = dY where X > 0, alpha * dY elsewhere."""
from onnxforge.runtime.autodiff.ops._common import attr

OP_TYPE = "LeakyRelu"


def vjp(ctx, node, dys, need):
    x, g = node.input[0], dys[0]
    alpha = attr(node, "alpha", 0.01)
    mask = ctx.op("Greater", [x, ctx.scalar(0.0, x)])
    return [ctx.like(ctx.op("Where", [mask, g, ctx.op("Mul", [g, ctx.scalar(alpha, g)])]), g)]
