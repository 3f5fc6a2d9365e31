"""ConvTranspose (dilations, group, kernel_shape, output_padding, pads, strides; explicit pads).

dX = Conv(dY, W) with the same strides, pads, dilations and group (the adjoint); dW is the Conv
weight gradient with the roles of input and output swapped; dB = dY summed over all but channels."""
from onnxforge.runtime.autodiff.ops import _conv_common as cc
from onnxforge.runtime.autodiff.ops._common import attr

OP_TYPE = "ConvTranspose"


def check(node, info):
    if attr(node, "auto_pad", "NOTSET") not in ("NOTSET", "VALID", ""):
        return "auto_pad SAME_* is not covered (give explicit pads)"
    if attr(node, "output_shape") is not None:
        return "output_shape is not covered (give pads and output_padding)"
    w_dims = info.get(node.input[1], (None, None))[1]
    if attr(node, "kernel_shape") is None and (w_dims is None or any(not isinstance(d, int) for d in w_dims[2:])):
        return "the kernel shape is unknown"
    return None


def vjp(ctx, node, dys, need):
    x, w = node.input[0], node.input[1]
    g = dys[0]
    kernel = attr(node, "kernel_shape") or ctx.dims(w)[2:]
    kernel, strides, dilations, pads, _ = cc.geometry(node, None, list(kernel))
    group = attr(node, "group", 1)
    r = len(kernel) + 2
    out = [None] * len(node.input)
    if need[0]:
        dx = ctx.op("Conv", [g, w], strides=strides, pads=pads, dilations=dilations,
                    group=group if group != 1 else None)
        out[0] = ctx.like(dx, x)
    if need[1]:
        out[1] = ctx.like(cc.weight_grad(ctx, g, x, group, kernel, strides, dilations, pads), w)
    if len(node.input) > 2 and node.input[2] and need[2]:
        out[2] = ctx.like(cc.bias_grad(ctx, g, r), node.input[2])
    return out
