"""ReduceSumSquare: d = 2 * dY * X, broadcast back over the reduced axes."""
from onnxforge.runtime.autodiff.ops import _reduce

OP_TYPE = "ReduceSumSquare"
NON_DIFFERENTIABLE_INPUTS = (1,)


def vjp(ctx, node, dys, need):
    def local(x, yk):
        return ctx.op("Mul", [x, ctx.scalar(2.0, x)])
    return _reduce.elementwise(ctx, node, dys, local)
