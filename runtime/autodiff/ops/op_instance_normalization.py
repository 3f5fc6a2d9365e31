"""InstanceNormalization(X, scale, B) (epsilon): X [N, C, ...] normalised per (n, c) over the
spatial axes with its own mean and biased variance, then scale and B per channel.
With xhat = (X - mean) * invstd: dX = scale * invstd * (dY - mean(dY) - xhat * mean(dY * xhat))
over the spatial axes; dscale = sum(dY * xhat), dB = sum(dY) over all axes but the channel's."""
from onnxforge.runtime.autodiff.ops import _norm
from onnxforge.runtime.autodiff.ops._common import attr, reduce

OP_TYPE = "InstanceNormalization"


def vjp(ctx, node, dys, need):
    x, scale, bias = node.input
    g = dys[0]
    r = ctx.need_rank(x)
    axes = list(range(2, r))
    ch = ctx.ints(range(1, r - 1))
    mu = reduce(ctx, "ReduceMean", x, axes)
    d = ctx.op("Sub", [x, mu])
    var = reduce(ctx, "ReduceMean", ctx.op("Mul", [d, d]), axes)
    inv = ctx.op("Reciprocal", [ctx.op("Sqrt", [ctx.op("Add", [var, ctx.scalar(attr(node, "epsilon", 1e-5), x)])])])
    xhat = ctx.op("Mul", [d, inv])
    out = [None, None, None]
    if need[0]:
        dxhat = ctx.op("Mul", [g, ctx.op("Unsqueeze", [scale, ch])])
        k = _norm.count_inverse(ctx, x, axes, x)
        out[0] = ctx.like(_norm.backward(ctx, dxhat, xhat, inv, axes, k), x)
    other = [0] + axes
    if need[1]:
        out[1] = ctx.like(reduce(ctx, "ReduceSum", ctx.op("Mul", [g, xhat]), other, keepdims=0), scale)
    if need[2]:
        out[2] = ctx.like(reduce(ctx, "ReduceSum", g, other, keepdims=0), bias)
    return out
