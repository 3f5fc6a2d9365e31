"""Mul (multidirectional broadcasting): dA = dY * B, dB = dY * A, each summed back to its shape."""
from onnxforge.runtime.autodiff.ops._common import unbroadcast_binary

OP_TYPE = "Mul"


def vjp(ctx, node, dys, need):
    a, b = node.input[0], node.input[1]
    g = dys[0]
    ga = ctx.op("Mul", [g, b]) if need[0] else None
    gb = ctx.op("Mul", [g, a]) if need[1] else None
    return unbroadcast_binary(ctx, node, ga, gb, need)
