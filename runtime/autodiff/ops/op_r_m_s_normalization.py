"""RMSNormalization(X, scale) (axis, epsilon; opset 23): Y = X * inv * scale with
inv = (mean(X^2) + eps)^-1/2 over axes [axis, rank). With xhat = X * inv:
dX = inv * (dxhat - xhat * mean(dxhat * xhat)), dxhat = dY * scale; dscale = dY * xhat summed
back to scale's shape."""
from onnxforge.runtime.autodiff.ops import _norm
from onnxforge.runtime.autodiff.ops._common import attr, reduce

OP_TYPE = "RMSNormalization"


def vjp(ctx, node, dys, need):
    x, scale = node.input[:2]
    g = dys[0]
    r = ctx.need_rank(x)
    axis = attr(node, "axis", -1)
    axes = list(range(axis + r if axis < 0 else axis, r))
    ms = reduce(ctx, "ReduceMean", ctx.op("Mul", [x, x]), axes)
    inv = ctx.op("Reciprocal", [ctx.op("Sqrt", [ctx.op("Add", [ms, ctx.scalar(attr(node, "epsilon", 1e-5), x)])])])
    xhat = ctx.op("Mul", [x, inv])
    out = [None] * len(node.input)
    if need[0]:
        dxhat = ctx.op("Mul", [g, scale])
        out[0] = ctx.like(_norm.backward(ctx, dxhat, xhat, inv, axes, _norm.count_inverse(ctx, x, axes, x),
                                         centred=False), x)
    if need[1]:
        out[1] = ctx.reduce_to(ctx.op("Mul", [g, xhat], dims=ctx.dims(x)), scale, ctx.dims(x))
    return out
