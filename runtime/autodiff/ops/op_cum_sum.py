"""CumSum(X, axis) (exclusive, reverse): dX = CumSum(dY) in the other direction, as exclusive."""
from onnxforge.runtime.autodiff.ops._common import attr

OP_TYPE = "CumSum"
NON_DIFFERENTIABLE_INPUTS = (1,)


def vjp(ctx, node, dys, need):
    x, axis = node.input
    out = ctx.op("CumSum", [dys[0], axis], exclusive=attr(node, "exclusive", 0) or None,
                 reverse=0 if attr(node, "reverse", 0) else 1)
    return [ctx.like(out, x), None]
