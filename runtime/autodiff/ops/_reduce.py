"""The shared rule of ReduceSum and ReduceMean."""
import numpy as np

from onnxforge.runtime.autodiff.ops._common import attr, axes_value, normalize


def vjp(ctx, node, dys, need, mean):
    x, y = node.input[0], node.output[0]
    g = dys[0]
    keepdims = attr(node, "keepdims", 1)
    noop = attr(node, "noop_with_empty_axes", 0)
    axes = axes_value(ctx, node, 1)
    rank = ctx.rank(x)
    rest = [None] * (len(node.input) - 1)
    if axes == [] and noop:
        return [g] + rest
    if not keepdims:
        if axes is not None and rank is not None:
            axes_n = normalize(axes, rank) if axes else list(range(rank))
            g = ctx.op("Unsqueeze", [g, ctx.ints(axes_n)])
        else:
            # axes only known at run time: the keepdims shape from the same reduction
            inputs = list(node.input)
            kept = ctx.op(node.op_type, inputs, keepdims=1, noop_with_empty_axes=noop or None,
                          axes=attr(node, "axes"))
            g = ctx.op("Reshape", [g, ctx.shape(kept)])
    g = ctx.op("Expand", [g, ctx.shape(x)])
    if mean:
        xs, ys = ctx.static_dims(x), ctx.static_dims(y)
        if xs is not None and ys is not None:
            count = float(np.prod(xs)) / max(float(np.prod(ys)), 1.0)
            g = ctx.op("Mul", [g, ctx.scalar(1.0 / count, g)])
        else:
            nx = ctx.op("Cast", [ctx.op("Size", [x])], to=ctx.elem(g))
            ny = ctx.op("Cast", [ctx.op("Size", [y])], to=ctx.elem(g))
            g = ctx.op("Div", [ctx.op("Mul", [g, ny]), nx])
    return [ctx.like(g, x)] + rest
