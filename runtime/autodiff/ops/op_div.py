"""Div (multidirectional broadcasting): dA = dY / B, dB = -dY * Y / B."""
from onnxforge.runtime.autodiff.ops._common import unbroadcast_binary

OP_TYPE = "Div"


def vjp(ctx, node, dys, need):
    b, y = node.input[1], node.output[0]
    g = dys[0]
    ga = gb = None
    if need[0] or need[1]:
        ga = ctx.op("Div", [g, b])
    if need[1]:
        gb = ctx.op("Neg", [ctx.op("Mul", [ga, y])])
    return unbroadcast_binary(ctx, node, ga if need[0] else None, gb, need)
