"""The backward of normalising over some axes, shared by InstanceNormalization and
RMSNormalization (LayerNormalization has its own, reading the node's saved statistics), and the
recognition of batch normalisation's training form (``batch_statistics``)."""
import numpy as np

from onnxforge.runtime.autodiff.ops._common import attr, axes_value, normalize, reduce


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


def _axes(ctx, node, rank):
    a = axes_value(ctx, node, 1)
    return None if a is None else normalize(a, rank)


def _filled(ctx, name, value) -> bool:
    v = ctx.value(name)
    return v is not None and np.size(v) > 0 and bool(np.all(np.asarray(v) == value))


def _is_centring(ctx, bn, x, mean) -> bool:
    """``bn`` is ``BatchNormalization(X, 1, 0, mean, 1, epsilon=0)``: X - mean, exactly."""
    return (bn is not None and bn.input[0] == x and bn.input[3] == mean and not attr(bn, "training_mode", 0)
            and attr(bn, "epsilon", 1e-5) == 0.0 and len(bn.output) == 1 and _filled(ctx, bn.input[1], 1)
            and _filled(ctx, bn.input[2], 0) and _filled(ctx, bn.input[4], 1))


def batch_statistics(ctx, node):
    """``d`` (the centred X) when the inference-form ``BatchNormalization`` ``node`` normalises X with
    X's own batch statistics, in the form ``passes.batchnorm_training_form`` writes:
    ``mean = ReduceMean(X, axes, keepdims=0)``, ``d = X - mean`` (``BatchNormalization(X, 1, 0, mean, 1,
    epsilon=0)`` with constant ones and zeros, or a Sub of ``mean`` unsqueezed to [C, 1, ...]),
    ``var = ReduceMean(d * d, axes, keepdims=0)``, axes all but 1; else None. (ReduceSumSquare(d)
    would save the product's pass, but ONNX Runtime's CPU kernel of it is 2-3x slower than
    Mul + ReduceMean over these axes.)"""
    x, mean, var = node.input[0], node.input[3], node.input[4]
    rank = ctx.rank(x)
    if rank is None or rank < 2 or attr(node, "training_mode", 0):
        return None
    axes = [0] + list(range(2, rank))
    rm = ctx.producer(mean, "ReduceMean")
    if rm is None or rm.input[0] != x or attr(rm, "keepdims", 1) != 0 or _axes(ctx, rm, rank) != axes:
        return None
    rv = ctx.producer(var, "ReduceMean")
    if rv is None or attr(rv, "keepdims", 1) != 0 or _axes(ctx, rv, rank) != axes:
        return None
    sq = ctx.producer(rv.input[0], "Mul")
    if sq is None or sq.input[0] != sq.input[1]:
        return None
    d = sq.input[0]
    if _is_centring(ctx, ctx.producer(d, "BatchNormalization"), x, mean):
        return d
    sub = ctx.producer(d, "Sub")
    if sub is None or sub.input[0] != x:
        return None
    centre = sub.input[1]
    if rank > 2:
        unsq = ctx.producer(centre, "Unsqueeze")
        if unsq is None or unsq.input[0] != mean or axes_value(ctx, unsq, 1) != list(range(1, rank - 1)):
            return None
    elif centre != mean:
        return None
    return sub.output[0]
