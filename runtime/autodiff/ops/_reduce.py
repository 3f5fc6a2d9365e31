"""The shared rules of the reductions: ReduceSum and ReduceMean, and through ``kept`` (a reduced
value in its keepdims=1 form, broadcastable against X) the other ReduceX ops."""
import numpy as np

from onnxforge.runtime.autodiff.ops._common import attr, axes_value, normalize


def kept(ctx, node, t):
    """``t`` (shaped like the node's output) in the keepdims=1 form of the reduction."""
    if attr(node, "keepdims", 1):
        return t
    axes = axes_value(ctx, node, 1)
    rank = ctx.rank(node.input[0])
    if axes is not None and rank is not None:
        if not axes and attr(node, "noop_with_empty_axes", 0):
            return t
        axes_n = normalize(axes, rank) if axes else list(range(rank))
        return ctx.op("Unsqueeze", [t, ctx.ints(axes_n)])
    # axes only known at run time: the keepdims shape from the same reduction
    same = ctx.op(node.op_type, list(node.input), keepdims=1,
                  noop_with_empty_axes=attr(node, "noop_with_empty_axes", 0) or None, axes=attr(node, "axes"))
    return ctx.op("Reshape", [t, ctx.shape(same)])


def is_noop(ctx, node) -> bool:
    return axes_value(ctx, node, 1) == [] and bool(attr(node, "noop_with_empty_axes", 0))


def vjp(ctx, node, dys, need, mean):
    x, y = node.input[0], node.output[0]
    g = dys[0]
    rest = [None] * (len(node.input) - 1)
    if is_noop(ctx, node):
        return [g] + rest
    g = ctx.op("Expand", [kept(ctx, node, g), ctx.shape(x)])
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


def elementwise(ctx, node, dys, local):
    """dX = Expand(kept(dY)) * local(x, y_kept), for reductions whose derivative is pointwise
    given the (kept) result: ``local(x, yk)`` returns the factor's name."""
    x = node.input[0]
    rest = [None] * (len(node.input) - 1)
    if is_noop(ctx, node):
        yk = node.output[0]
    else:
        yk = kept(ctx, node, node.output[0])
    gk = dys[0] if is_noop(ctx, node) else kept(ctx, node, dys[0])
    dx = ctx.op("Expand", [ctx.op("Mul", [gk, local(x, yk)]), ctx.shape(x)])
    return [ctx.like(dx, x)] + rest
