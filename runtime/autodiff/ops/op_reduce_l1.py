"""ReduceL1: d = dY * Sign(X), broadcast back over the reduced axes."""
from onnxforge.runtime.autodiff.ops import _reduce

OP_TYPE = "ReduceL1"
NON_DIFFERENTIABLE_INPUTS = (1,)


def vjp(ctx, node, dys, need):
    def local(x, yk):
        return ctx.op("Sign", [x])
    return _reduce.elementwise(ctx, node, dys, local)
