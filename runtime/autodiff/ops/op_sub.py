"""Sub (multidirectional broadcasting): dA = dY, dB = -dY, each summed back to its shape."""
from onnxforge.runtime.autodiff.ops._common import unbroadcast_binary

OP_TYPE = "Sub"


def vjp(ctx, node, dys, need):
    g = dys[0]
    gb = ctx.like(ctx.op("Neg", [g]), g) if need[1] else None
    return unbroadcast_binary(ctx, node, g, gb, need)
