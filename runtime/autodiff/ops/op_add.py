"""Add (multidirectional broadcasting): dA = dY, dB = dY, each summed back to its shape."""
from onnxforge.runtime.autodiff.ops._common import unbroadcast_binary

OP_TYPE = "Add"


def vjp(ctx, node, dys, need):
    return unbroadcast_binary(ctx, node, dys[0], dys[0], need)
