"""LayerNormalization (axis, epsilon; opset 17): normalises over axes [axis, rank).

Uses the node's own Mean and InvStdDev outputs (declared on the forward node when absent):
xhat = (X - mean) * invstd, dxhat = dY * scale,
dX = invstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)), dScale and dB are dY * xhat and
dY summed back to their shapes."""
from onnxforge.runtime.autodiff.ops._common import attr

OP_TYPE = "LayerNormalization"


def vjp(ctx, node, dys, need):
    x, scale = node.input[0], node.input[1]
    bias = node.input[2] if len(node.input) > 2 and node.input[2] else None
    g = dys[0]
    out = [None] * len(node.input)
    if g is None:
        return out
    r = ctx.need_rank(x)
    axis = attr(node, "axis", -1)
    axis = axis + r if axis < 0 else axis
    mean = ctx.ensure_output(node, 1, "ln_mean")
    inv = ctx.ensure_output(node, 2, "ln_invstd")
    if ctx.elem(mean) is None:
        ctx.info[mean] = ctx.info[inv] = (ctx.elem(x), None)
    if ctx.elem(x) != 1:  # stash_type float: Mean and InvStdDev are float
        mean = ctx.op("Cast", [mean], to=ctx.elem(x))
        inv = ctx.op("Cast", [inv], to=ctx.elem(x))
    xhat = ctx.op("Mul", [ctx.op("Sub", [x, mean]), inv])
    y_dims = ctx.dims(x)
    if need[0]:
        axes = ctx.ints(range(axis, r))
        dxh = ctx.op("Mul", [g, scale])
        dims = ctx.static_dims(x)
        if dims is not None:
            count = 1
            for d in dims[axis:]:
                count *= d
            k = ctx.scalar(1.0 / count, g)
        else:
            k = ctx.op("Div", [ctx.scalar(1.0, g), ctx.op("Cast", [ctx.op("ReduceProd", [ctx.shape(x, axis)],
                                                                           keepdims=0)], to=ctx.elem(g))])
        m1 = ctx.op("Mul", [ctx.op("ReduceSum", [dxh, axes], keepdims=1), k])
        m2 = ctx.op("Mul", [ctx.op("ReduceSum", [ctx.op("Mul", [dxh, xhat]), axes], keepdims=1), k])
        inner = ctx.op("Sub", [ctx.op("Sub", [dxh, m1]), ctx.op("Mul", [xhat, m2])])
        out[0] = ctx.like(ctx.op("Mul", [inner, inv]), x)
    if need[1]:
        out[1] = ctx.reduce_to(ctx.op("Mul", [g, xhat], dims=y_dims), scale, y_dims)
    if bias is not None and need[2]:
        out[2] = ctx.reduce_to(g, bias, y_dims)
    return out
