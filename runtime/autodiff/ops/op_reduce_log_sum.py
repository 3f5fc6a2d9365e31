"""ReduceLogSum: d = dY / exp(Y) (Y = log of the sum), broadcast back over the reduced axes."""
from onnxforge.runtime.autodiff.ops import _reduce

OP_TYPE = "ReduceLogSum"
NON_DIFFERENTIABLE_INPUTS = (1,)


def vjp(ctx, node, dys, need):
    def local(x, yk):
        return ctx.op("Exp", [ctx.op("Neg", [yk])])
    return _reduce.elementwise(ctx, node, dys, local)
