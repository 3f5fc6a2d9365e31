"""Conv (auto_pad, dilations, group, kernel_shape, pads, strides).

dX = ConvTranspose(dY, W) with the forward's strides, pads, dilations and group, and the
output_padding that restores positions no window reached (with symbolic spatial dims: no end
pads, then a Slice and Pad to the input's size computed at run time), or, where ONNX Runtime runs
it faster (stride 1: grouped, depthwise, 1x1, dense from 16x16), a Conv of dY by the flipped kernel
(_conv_grad.input_grad); dW = a Conv of the input by dY over swapped axes or a MatMul of patches
(_conv_common.weight_grad), for a stride-1 3x3 depthwise kernel a multiply-and-sum per tap
(_conv_grad.weight_grad); dB = dY summed over all but the channel axis.
auto_pad SAME_* over symbolic spatial dims: the pads are computed at run time, the input padded
by them and the rest done as for VALID, the input's gradient cut back out of the padded one."""
from onnxforge.runtime.autodiff.ops import _conv_common as cc
from onnxforge.runtime.autodiff.ops import _conv_grad as fast
from onnxforge.runtime.autodiff.ops._common import attr

OP_TYPE = "Conv"


def _geometry(node, info):
    x_dims = info.get(node.input[0], (None, None))[1]
    w_dims = info.get(node.input[1], (None, None))[1]
    kernel = attr(node, "kernel_shape")
    if kernel is None:
        if w_dims is None or any(not isinstance(d, int) for d in w_dims[2:]):
            return None, "the kernel shape is unknown"
        kernel = w_dims[2:]
    return cc.geometry(node, x_dims, list(kernel)), None  # pads None: auto_pad over symbolic dims


def check(node, info):
    geo, why = _geometry(node, info)
    if why:
        return why
    return None


def vjp(ctx, node, dys, need):
    x, w = node.input[0], node.input[1]
    g = dys[0]
    (kernel, strides, dilations, pads, spatial), _ = _geometry(node, ctx.info)
    group = attr(node, "group", 1)
    r = len(kernel) + 2
    out = [None] * len(node.input)
    n = len(kernel)
    if pads is None:  # auto_pad SAME_* over symbolic spatial dims: pad at run time, then VALID
        begin, end = cc.same_pads(ctx, x, kernel, strides, dilations, attr(node, "auto_pad"))
        xp = cc.pad_spatial(ctx, x, begin, end)
        if need[0]:
            dxp = cc.conv_transpose(ctx, g, w, group, strides, [0] * (2 * n), dilations, None, ctx.dims(x), ctx.dims(w))
            out[0] = ctx.like(cc.crop_spatial(ctx, cc.fit_spatial(ctx, dxp, xp, n), x, begin, n), x)
        if need[1]:
            out[1] = ctx.like(cc.weight_grad(ctx, xp, g, group, kernel, strides, dilations, [0] * (2 * n)), w)
        if len(node.input) > 2 and node.input[2] and need[2]:
            out[2] = ctx.like(cc.bias_grad(ctx, g, r), node.input[2])
        return out
    if need[0]:
        extra = cc.leftover(spatial, kernel, strides, dilations, pads)
        if extra is None:  # strided, spatial dims known only at run time: no end pads, then fit
            dx = cc.conv_transpose(ctx, g, w, group, strides, pads[:n] + [0] * n, dilations, None, ctx.dims(x),
                                   ctx.dims(w))
            dx = cc.fit_spatial(ctx, dx, x, n)
        else:
            dx = fast.input_grad(ctx, g, w, group, kernel, strides, dilations, pads, ctx.dims(g))
            if dx is None:
                dx = cc.conv_transpose(ctx, g, w, group, strides, pads, dilations, extra, ctx.dims(x), ctx.dims(w))
        out[0] = ctx.like(dx, x)
    if need[1]:
        out[1] = ctx.like(fast.weight_grad(ctx, x, g, group, kernel, strides, dilations, pads, ctx.dims(w)), w)
    if len(node.input) > 2 and node.input[2] and need[2]:
        out[2] = ctx.like(cc.bias_grad(ctx, g, r), node.input[2])
    return out
