"""The backward of normalising over some axes, shared by InstanceNormalization and
RMSNormalization (LayerNormalization has its own, reading the node's saved statistics)."""
from onnxforge.runtime.autodiff.ops._common import reduce


def count_inverse(ctx, x, axes, like):
    """1 / (the number of elements in one normalised slot), a constant when dims are known."""
    dims = ctx.static_dims(x)
    if dims is not None:
        n = 1
        for a in axes:
            n *= dims[a]
        return ctx.scalar(1.0 / n, like)
    size = ctx.op("Cast", [ctx.op("Size", [x])], to=ctx.elem(like))
    per = ctx.op("Cast", [ctx.op("Size", [reduce(ctx, "ReduceSum", x, axes)])], to=ctx.elem(like))
    return ctx.op("Div", [per, size])


def backward(ctx, dxhat, xhat, inv, axes, k, centred=True):
    """dX of xhat = (X - mean) * inv (``centred``) or X * inv: inv * (dxhat - mean(dxhat) -
    xhat * mean(dxhat * xhat)), the mean(dxhat) term only when centred; ``k`` = 1 / count."""
    m2 = ctx.op("Mul", [reduce(ctx, "ReduceSum", ctx.op("Mul", [dxhat, xhat]), axes), k])
    inner = ctx.op("Sub", [dxhat, ctx.op("Mul", [xhat, m2])])
    if centred:
        m1 = ctx.op("Mul", [reduce(ctx, "ReduceSum", dxhat, axes), k])
        inner = ctx.op("Sub", [inner, m1])
    return ctx.op("Mul", [inner, inv])
