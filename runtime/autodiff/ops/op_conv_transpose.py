"""ConvTranspose (auto_pad, dilations, group, kernel_shape, output_padding, output_shape, pads,
strides).

dX = Conv(dY, W) with the same strides, pads, dilations and group (the adjoint); dW is the Conv
weight gradient with the roles of input and output swapped; dB = dY summed over all but channels.
With ``output_shape`` or ``auto_pad`` SAME_* the pads are the ones the spec derives (total =
stride * (in - 1) + output_padding + span - out; SAME_UPPER puts total // 2 first, SAME_LOWER and
output_shape put it last; ONNX Runtime 1.19 and 1.31 and onnx.reference agree), which needs the
spatial input dims at build time; an output_shape larger than the natural one is refused."""
from onnxforge.runtime.autodiff.ops import _conv_common as cc
from onnxforge.runtime.autodiff.ops import _conv_grad as fast
from onnxforge.runtime.autodiff.ops._common import attr

OP_TYPE = "ConvTranspose"


def _kernel(node, info):
    w_dims = info.get(node.input[1], (None, None))[1]
    kernel = attr(node, "kernel_shape")
    if kernel is None:
        if w_dims is None or any(not isinstance(d, int) for d in w_dims[2:]):
            return None
        kernel = w_dims[2:]
    return list(kernel)


def _pads(node, info, kernel):
    """``(pads, None)`` of the node, or ``(None, why)``."""
    n = len(kernel)
    auto = attr(node, "auto_pad", "NOTSET") or "NOTSET"
    out_shape = attr(node, "output_shape")
    if auto == "VALID":
        return [0] * (2 * n), None
    if auto == "NOTSET" and out_shape is None:
        return list(attr(node, "pads", [0] * (2 * n))), None
    x_dims = info.get(node.input[0], (None, None))[1]
    spatial = None if x_dims is None else x_dims[2:]
    if spatial is None or any(not isinstance(d, int) for d in spatial):
        return None, "output_shape or auto_pad SAME_* needs the spatial input dims, which shape inference could not find"
    strides = list(attr(node, "strides", [1] * n))
    dilations = list(attr(node, "dilations", [1] * n))
    out_pad = list(attr(node, "output_padding", [0] * n))
    target = list(out_shape)[-n:] if out_shape is not None else [d * s for d, s in zip(spatial, strides)]
    pads = [0] * (2 * n)
    for i in range(n):
        total = strides[i] * (spatial[i] - 1) + out_pad[i] + (kernel[i] - 1) * dilations[i] + 1 - target[i]
        if total < 0:
            return None, f"an output_shape {target} larger than the natural output is not covered"
        first = total // 2 if auto == "SAME_UPPER" else total - total // 2
        pads[i], pads[i + n] = first, total - first
    return pads, None


def check(node, info):
    kernel = _kernel(node, info)
    if kernel is None:
        return "the kernel shape is unknown"
    return _pads(node, info, kernel)[1]


def vjp(ctx, node, dys, need):
    x, w = node.input[0], node.input[1]
    g = dys[0]
    kernel = _kernel(node, ctx.info)
    pads, _ = _pads(node, ctx.info, kernel)
    n = len(kernel)
    strides = list(attr(node, "strides", [1] * n))
    dilations = list(attr(node, "dilations", [1] * n))
    group = attr(node, "group", 1)
    out = [None] * len(node.input)
    if need[0]:
        dx = ctx.op("Conv", [g, w], strides=strides, pads=pads, dilations=dilations,
                    group=group if group != 1 else None)
        out[0] = ctx.like(dx, x)
    if need[1]:
        out[1] = ctx.like(fast.weight_grad(ctx, g, x, group, kernel, strides, dilations, pads, ctx.dims(w)), w)
    if len(node.input) > 2 and node.input[2] and need[2]:
        out[2] = ctx.like(cc.bias_grad(ctx, g, n + 2), node.input[2])
    return out
