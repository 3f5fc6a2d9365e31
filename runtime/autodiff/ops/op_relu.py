"""Relu: dX = dY where Y > 0, else 0 (PyTorch's threshold_backward on the result)."""
from onnxforge.runtime.autodiff.ops._common import where_positive

OP_TYPE = "Relu"


def vjp(ctx, node, dys, need):
    return [where_positive(ctx, node.output[0], dys[0])]
