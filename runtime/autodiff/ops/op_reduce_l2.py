"""ReduceL2: Y = sqrt(sum(X^2)); dX = dY * X / Y (0 where Y is 0, the subgradient PyTorch's
norm picks), broadcast back over the reduced axes."""
from onnxforge.runtime.autodiff.ops import _reduce

OP_TYPE = "ReduceL2"
NON_DIFFERENTIABLE_INPUTS = (1,)


def vjp(ctx, node, dys, need):
    def local(x, yk):
        zero = ctx.op("Equal", [yk, ctx.scalar(0.0, yk)])
        safe = ctx.op("Where", [zero, ctx.scalar(1.0, yk), yk])
        return ctx.op("Where", [zero, ctx.scalar(0.0, yk), ctx.op("Div", [x, safe])])
    return _reduce.elementwise(ctx, node, dys, local)
