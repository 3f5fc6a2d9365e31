"""LayerNormalization (axis, epsilon, stash_type; opset 17): normalises over axes [axis, rank).

Uses the node's own Mean and InvStdDev outputs (declared on the forward node when absent), with
N the number of normalised elements: xhat = (X - mean) * invstd, dxhat = dY * scale,
dX = invstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)), dScale and dB are dY * xhat and
dY summed back to their shapes. The optional outputs are differentiated too:
Mean = sum(X) / N gives dX += dMean / N; InvStdDev = (var + eps)^-1/2 gives
dX += -dInvStdDev * invstd^2 * xhat / N. A rank known only at run time makes the normalised
axes and N computed in the graph."""
import numpy as np

from onnxforge.runtime.autodiff.ops._common import attr

OP_TYPE = "LayerNormalization"
GRAD_OUTPUTS = (0, 1, 2)


def _inverse_count(ctx, x, axis, like):
    dims = ctx.static_dims(x)
    if dims is not None:
        count = 1
        for d in dims[axis:]:
            count *= d
        return ctx.scalar(1.0 / count, like)
    n = ctx.op("Cast", [ctx.op("ReduceProd", [ctx.shape(x, axis)], keepdims=0)], to=ctx.elem(like))
    return ctx.op("Div", [ctx.scalar(1.0, like), n])


def vjp(ctx, node, dys, need):
    x, scale = node.input[0], node.input[1]
    bias = node.input[2] if len(node.input) > 2 and node.input[2] else None
    dys = list(dys) + [None] * (3 - len(dys))
    g, g_mean, g_inv = dys[:3]
    out = [None] * len(node.input)
    r = ctx.rank(x)
    axis = attr(node, "axis", -1)
    if r is not None:
        axis = axis + r if axis < 0 else axis
        axes = ctx.ints(range(axis, r))
    else:  # the rank is known only at run time: the normalised axes are a Range
        rank = ctx.op("Size", [ctx.op("Shape", [x])])
        start = ctx.const(np.array(axis, np.int64))
        if axis < 0:
            start = ctx.op("Add", [start, rank])
        axes = ctx.op("Range", [start, rank, ctx.const(np.array(1, np.int64))])
    mean = ctx.ensure_output(node, 1, "ln_mean")
    inv = ctx.ensure_output(node, 2, "ln_invstd")
    if ctx.elem(mean) is None:  # declared here: the type stash_type says
        ctx.info[mean] = ctx.info[inv] = (attr(node, "stash_type", 1), None)
    stash = ctx.elem(mean)
    if stash != ctx.elem(x):  # stash_type float: Mean and InvStdDev are float
        mean = ctx.op("Cast", [mean], to=ctx.elem(x))
        inv = ctx.op("Cast", [inv], to=ctx.elem(x))
    if g_mean is not None and ctx.elem(g_mean) not in (None, ctx.elem(x)):
        g_mean = ctx.op("Cast", [g_mean], to=ctx.elem(x))
    if g_inv is not None and ctx.elem(g_inv) not in (None, ctx.elem(x)):
        g_inv = ctx.op("Cast", [g_inv], to=ctx.elem(x))
    xhat = ctx.op("Mul", [ctx.op("Sub", [x, mean]), inv])
    y_dims = ctx.dims(x)
    k = _inverse_count(ctx, x, axis, x)
    if need[0]:
        terms = []
        if g is not None:
            dxh = ctx.op("Mul", [g, scale])
            m1 = ctx.op("Mul", [ctx.op("ReduceSum", [dxh, axes], keepdims=1), k])
            m2 = ctx.op("Mul", [ctx.op("ReduceSum", [ctx.op("Mul", [dxh, xhat]), axes], keepdims=1), k])
            inner = ctx.op("Sub", [ctx.op("Sub", [dxh, m1]), ctx.op("Mul", [xhat, m2])])
            terms.append(ctx.op("Mul", [inner, inv]))
        if g_mean is not None:
            terms.append(ctx.op("Expand", [ctx.op("Mul", [g_mean, k]), ctx.shape(x)]))
        if g_inv is not None:
            inv2k = ctx.op("Mul", [ctx.op("Mul", [inv, inv]), k])
            terms.append(ctx.op("Neg", [ctx.op("Mul", [ctx.op("Mul", [g_inv, inv2k]), xhat])]))
        out[0] = ctx.like(ctx.sum(terms) if terms else ctx.zeros_like(x), x)
    if need[1]:
        out[1] = ctx.reduce_to(ctx.op("Mul", [g, xhat], dims=y_dims), scale, y_dims) if g is not None else \
            ctx.zeros_like(scale)
    if bias is not None and need[2]:
        out[2] = ctx.reduce_to(g, bias, y_dims) if g is not None else ctx.zeros_like(bias)
    return out
