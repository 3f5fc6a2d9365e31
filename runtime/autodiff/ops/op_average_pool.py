"""AveragePool (auto_pad, count_include_pad, dilations, kernel_shape, pads, strides; ceil_mode 0).

Each output is a window sum over a divisor, so dX = ConvTranspose(dY / divisor) with a kernel of
ones over channels folded into the batch ([N*C, 1, ...]). The divisor is the window size, or with
count_include_pad=0 and padding the count of real positions per window (an AveragePool of ones)."""
import numpy as np

from onnxforge.runtime.autodiff.ops import _conv_common as cc
from onnxforge.runtime.autodiff.ops._common import attr

OP_TYPE = "AveragePool"


def check(node, info):
    if attr(node, "ceil_mode", 0):
        return "ceil_mode=1 is not covered"
    x_dims = info.get(node.input[0], (None, None))[1]
    kernel, strides, dilations, pads, spatial = cc.geometry(node, x_dims)
    if pads is None:
        return "auto_pad needs the spatial input dims, which shape inference could not find"
    if cc.leftover(spatial, kernel, strides, dilations, pads) is None:
        return "a strided pool's gradient needs the spatial input dims known"
    return None


def vjp(ctx, node, dys, need):
    x, y, g = node.input[0], node.output[0], dys[0]
    kernel, strides, dilations, pads, spatial = cc.geometry(node, ctx.dims(x))
    n = len(kernel)
    if attr(node, "count_include_pad", 0) or not any(pads):
        scaled = ctx.op("Mul", [g, ctx.scalar(1.0 / float(np.prod(kernel)), g)])
    else:
        ones = ctx.fill_like(x, 1.0)
        frac = ctx.op("AveragePool", [ones], kernel_shape=kernel, strides=strides, pads=pads,
                      dilations=dilations if any(d != 1 for d in dilations) else None, count_include_pad=1)
        count = ctx.op("Mul", [frac, ctx.scalar(float(np.prod(kernel)), g)])
        scaled = ctx.op("Div", [g, count])
    flat = ctx.op("Reshape", [scaled, ctx.op("Concat", [ctx.ints([-1, 1]), ctx.shape(y, 2)], axis=0)])
    w = ctx.const(np.ones([1, 1] + list(kernel), ctx.np_dtype(g)))
    extra = cc.leftover(spatial, kernel, strides, dilations, pads)
    dx = ctx.op("ConvTranspose", [flat, w], strides=strides, pads=pads,
                dilations=dilations if any(d != 1 for d in dilations) else None,
                output_padding=extra if any(extra) else None)
    _ = n
    return [ctx.like(ctx.op("Reshape", [dx, ctx.target_shape(x)]), x)]
