"""AveragePool (auto_pad, ceil_mode, count_include_pad, dilations, kernel_shape, pads, strides).

Each output is a window sum over a divisor, so dX = ConvTranspose(dY / divisor) with a kernel of
ones over channels folded into the batch ([N*C, 1, ...]). The divisor is the window size, or with
count_include_pad=0 and padding the count of real positions per window (an AveragePool of ones).
With ceil_mode=1 the last windows may reach past the padding and the divisor there is the op's
own business: it is measured from the op itself, divisor = (real positions per window) /
AveragePool(ones), the real positions counted by a Conv of ones over the end padding extended to
the windows' reach (static spatial dims needed; folded to constants). ONNX Runtime before 1.20
divides such windows differently with count_include_pad=1 (1.31, onnx.reference and PyTorch
agree; the rule follows them). A last window that would start inside the end padding is refused:
ONNX Runtime 1.19 keeps it, onnx.reference and PyTorch drop it. With symbolic spatial dims the
positions no window reached are restored by a Pad computed at run time; auto_pad SAME_* there
pads and crops by pads computed at run time."""
import numpy as np

from onnxforge.runtime.autodiff.ops import _conv_common as cc
from onnxforge.runtime.autodiff.ops._common import attr

OP_TYPE = "AveragePool"


def check(node, info):
    x_dims = info.get(node.input[0], (None, None))[1]
    kernel, strides, dilations, pads, spatial = cc.geometry(node, x_dims)
    if pads is None:
        if attr(node, "ceil_mode", 0):
            return "ceil_mode=1 with auto_pad over symbolic spatial dims is not covered"
        return None
    if attr(node, "ceil_mode", 0):
        y_dims = info.get(node.output[0], (None, None))[1]
        if spatial is None or y_dims is None or any(not isinstance(d, int) for d in list(spatial) + y_dims[2:]):
            return "ceil_mode=1 needs the spatial input and output dims, which shape inference could not find"
        n = len(kernel)
        for i in range(n):
            span = (kernel[i] - 1) * dilations[i] + 1
            last = -(-(spatial[i] + pads[i] + pads[i + n] - span) // strides[i])
            if last * strides[i] >= spatial[i] + pads[i]:
                return (f"ceil_mode=1 where the last window would start in the end padding (axis {i + 2}): "
                        "runtimes disagree on whether it exists (ONNX Runtime keeps it, onnx.reference and "
                        "PyTorch drop it); give pads that avoid it")
        return None
    return None


def _reach(kernel, strides, dilations, pads, spatial, out):
    """Pads whose end side is extended so that floor-mode windows cover all ``out`` outputs
    and the ConvTranspose back lands exactly on the input size."""
    n = len(kernel)
    ext = list(pads)
    for i in range(n):
        span = (kernel[i] - 1) * dilations[i] + 1
        ext[i + n] = (out[i] - 1) * strides[i] + span - spatial[i] - pads[i]
    return ext


def _same_at_run_time(ctx, node, x, g, kernel, strides, dilations, dil, w, flat):
    """auto_pad SAME_* over symbolic spatial dims: the divisor from the node's own pool of ones
    (count_include_pad=0 counts real positions), the adjoint over the input padded by the pads
    computed at run time, cut back to the input."""
    n, k = len(kernel), float(np.prod(kernel))
    if attr(node, "count_include_pad", 0):
        scaled = ctx.op("Mul", [g, ctx.scalar(1.0 / k, g)])
    else:
        frac = ctx.op("AveragePool", [ctx.fill_like(x, 1.0)], kernel_shape=kernel, strides=strides,
                      auto_pad=attr(node, "auto_pad"), dilations=dil, count_include_pad=1)
        scaled = ctx.op("Div", [g, ctx.op("Mul", [frac, ctx.scalar(k, g)])])
    begin, end = cc.same_pads(ctx, x, kernel, strides, dilations, attr(node, "auto_pad"))
    padded = ctx.op("Add", [ctx.op("Add", [ctx.shape(x, 2), begin]), end])
    dxp = ctx.op("ConvTranspose", [flat(scaled), w], strides=strides, dilations=dil)
    dx = cc.crop_spatial(ctx, cc.fit_spatial(ctx, dxp, None, n, size=padded), x, begin, n)
    return ctx.op("Reshape", [dx, ctx.shape(x)])


def vjp(ctx, node, dys, need):
    x, y, g = node.input[0], node.output[0], dys[0]
    kernel, strides, dilations, pads, spatial = cc.geometry(node, ctx.dims(x))
    dil = dilations if any(d != 1 for d in dilations) else None
    w = ctx.const(np.ones([1, 1] + list(kernel), ctx.np_dtype(g)))
    flat = lambda t: ctx.op("Reshape", [t, ctx.op("Concat", [ctx.ints([-1, 1]), ctx.shape(t, 2)], axis=0)])  # noqa: E731
    if pads is None:
        return [ctx.like(_same_at_run_time(ctx, node, x, g, kernel, strides, dilations, dil, w, flat), x)]
    if attr(node, "ceil_mode", 0):
        # per window (the same for every sample and channel: [1, 1, *out], folded to constants)
        pads = _reach(kernel, strides, dilations, pads, spatial, ctx.dims(y)[2:])
        ones = ctx.const(np.ones([1, 1] + list(spatial), ctx.np_dtype(g)))
        frac = ctx.op("AveragePool", [ones], kernel_shape=kernel, strides=strides, pads=attr(node, "pads"),
                      auto_pad=attr(node, "auto_pad"), dilations=dil, ceil_mode=1,
                      count_include_pad=attr(node, "count_include_pad"))
        real = ctx.op("Conv", [ones, w], strides=strides, pads=pads, dilations=dil)
        scaled = ctx.op("Mul", [g, ctx.op("Div", [frac, real])])
        extra = []  # the extended pads land exactly on the input size
    elif attr(node, "count_include_pad", 0) or not any(pads):
        scaled = ctx.op("Mul", [g, ctx.scalar(1.0 / float(np.prod(kernel)), g)])
        extra = cc.leftover(spatial, kernel, strides, dilations, pads)
    else:
        ones = ctx.fill_like(x, 1.0)
        frac = ctx.op("AveragePool", [ones], kernel_shape=kernel, strides=strides, pads=pads, dilations=dil,
                      count_include_pad=1)
        count = ctx.op("Mul", [frac, ctx.scalar(float(np.prod(kernel)), g)])
        scaled = ctx.op("Div", [g, count])
        extra = cc.leftover(spatial, kernel, strides, dilations, pads)
    ctx.info[scaled] = (ctx.elem(g), ctx.dims(y))
    n = len(kernel)
    if extra is None:  # strided, spatial dims known only at run time: no end pads, then fit
        dx = cc.fit_spatial(ctx, ctx.op("ConvTranspose", [flat(scaled), w], strides=strides,
                                         pads=list(pads[:n]) + [0] * n, dilations=dil), x, n)
    else:
        dx = ctx.op("ConvTranspose", [flat(scaled), w], strides=strides, pads=pads, dilations=dil,
                    output_padding=extra if any(extra) else None)
    return [ctx.like(ctx.op("Reshape", [dx, ctx.target_shape(x)]), x)]
