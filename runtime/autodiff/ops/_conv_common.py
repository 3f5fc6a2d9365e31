"""Geometry shared by the Conv, ConvTranspose and pooling rules."""

from __future__ import annotations

import itertools
import math

from onnxforge.runtime.autodiff.ops._common import attr


def geometry(node, x_dims, kernel=None):
    """``(kernel, strides, dilations, pads, spatial)`` of a Conv/pool node over input dims
    ``x_dims`` ([N, C, *spatial]); ``auto_pad`` is resolved to explicit pads (it needs the
    spatial dims), and ``None`` is returned in place of pads when it cannot be."""
    if kernel is None:
        kernel = list(attr(node, "kernel_shape"))
    n = len(kernel)
    strides = list(attr(node, "strides", [1] * n))
    dilations = list(attr(node, "dilations", [1] * n))
    spatial = None if x_dims is None else list(x_dims[2:])
    auto = attr(node, "auto_pad", "NOTSET")
    if auto in ("NOTSET", ""):
        pads = list(attr(node, "pads", [0] * (2 * n)))
    elif auto == "VALID":
        pads = [0] * (2 * n)
    else:
        if spatial is None or any(not isinstance(d, int) for d in spatial):
            return kernel, strides, dilations, None, spatial
        pads = [0] * (2 * n)
        for i in range(n):
            out = math.ceil(spatial[i] / strides[i])
            total = max((out - 1) * strides[i] + (kernel[i] - 1) * dilations[i] + 1 - spatial[i], 0)
            small, big = total // 2, total - total // 2
            pads[i], pads[i + n] = (small, big) if auto == "SAME_UPPER" else (big, small)
    return kernel, strides, dilations, pads, spatial


def leftover(spatial, kernel, strides, dilations, pads):
    """Per spatial axis, how many trailing input positions no window reaches (the
    ConvTranspose ``output_padding`` that restores the input size); ``None`` if unknown."""
    n = len(kernel)
    out = []
    for i in range(n):
        if strides[i] == 1:
            out.append(0)
            continue
        if spatial is None or not isinstance(spatial[i], int):
            return None
        span = (kernel[i] - 1) * dilations[i] + 1
        out.append((spatial[i] + pads[i] + pads[i + n] - span) % strides[i])
    return out


def fit_spatial(ctx, dx, x, n, size=None):
    """``dx`` (an adjoint computed with no end pads, so that nothing real was cropped) cut or
    padded with zeros at the end of its ``n`` spatial axes to the spatial size of ``x`` (or to
    ``size``, int64 [n]), computed at run time: what ``output_padding`` and the end pads do when
    the spatial dims are symbolic."""
    size = size or ctx.shape(x, 2)
    cut = ctx.op("Slice", [dx, ctx.ints([0] * n), size, ctx.ints(range(2, n + 2))])
    short = ctx.op("Sub", [size, ctx.shape(cut, 2)])
    pads = ctx.op("Concat", [ctx.ints([0] * (n + 2 + 2)), short], axis=0)
    return ctx.op("Pad", [cut, pads])


def same_pads(ctx, x, kernel, strides, dilations, auto):
    """``(begin, end)`` (int64 [n] each): the pads ``auto_pad`` SAME_UPPER/SAME_LOWER gives ``x``,
    computed at run time as the spec says (out = ceil(S / s), total = max((out - 1) s + span - S, 0),
    the odd one at the end for SAME_UPPER)."""
    n = len(kernel)
    size, s = ctx.shape(x, 2), ctx.ints(strides)
    span = ctx.ints([(k - 1) * d + 1 for k, d in zip(kernel, dilations)])
    out = ctx.op("Div", [ctx.op("Add", [size, ctx.ints([st - 1 for st in strides])]), s])
    reach = ctx.op("Add", [ctx.op("Mul", [ctx.op("Sub", [out, ctx.ints([1] * n)]), s]), span])
    total = ctx.op("Max", [ctx.op("Sub", [reach, size]), ctx.ints([0] * n)])
    half = ctx.op("Div", [total, ctx.ints([2] * n)])
    rest = ctx.op("Sub", [total, half])
    return (half, rest) if auto == "SAME_UPPER" else (rest, half)


def pad_spatial(ctx, x, begin, end):
    """``x`` padded with zeros by run-time ``begin``/``end`` (int64 [n]) on its spatial axes."""
    return ctx.op("Pad", [x, ctx.op("Concat", [ctx.ints([0, 0]), begin, ctx.ints([0, 0]), end], axis=0)])


def crop_spatial(ctx, dxp, x, begin, n):
    """The gradient of ``x`` from that of ``x`` padded by ``begin`` at the start: the slab
    ``begin .. begin + S`` of ``dxp`` along the spatial axes."""
    return ctx.op("Slice", [dxp, begin, ctx.op("Add", [begin, ctx.shape(x, 2)]), ctx.ints(range(2, n + 2))])


# Below this many input channels the Conv over swapped axes is as fast as the patches (measured
# on ONNX Runtime 1.19 and 1.31, one thread: 1->16 on 8x8 at batch 64, 95-167 us vs 115-241 us).
IM2COL_MIN_CHANNELS = 8
IM2COL_MAX_TAPS = 49
# The patches take taps * C * prod(O) values per sample (9x the input for a 3x3 "same" Conv);
# above this many per sample (2 MiB of float32) the Conv, which works one channel at a time, is
# kept. Measured up to 147,456 per sample (16->32 on 32x32), where the patches still win.
IM2COL_MAX_PER_SAMPLE = 2 ** 19


def weight_grad(ctx, x, gy, group, kernel, strides, dilations, pads):
    """dW [M, C/group, *kernel] of ``Y = Conv(x, W)`` given ``gy = dY``.

    Ungrouped, with at least 8 input channels, a kernel of at most 49 taps, static spatial dims
    and patches of at most 2^19 values per sample: one MatMul of dY [M, N*O] by the input's
    patches [N*O, taps*C], built channels-last by one Slice per tap (:func:`_patch_weight_grad`).
    Measured on ONNX Runtime 1.19 and 1.31, one thread (tests/runtime/autodiff/
    bench_conv_weight_grad.py): 16->32 on 4x4 at batch 64, 200-281 us against 448-602 us for the
    Conv below; 32->64 on 16x16 at batch 32, 15-20 ms against 22-30 ms. Otherwise one Conv of the
    input with the batch as channels ([C/g, g*N, *S]) by dY with the batch as channels
    ([M, N, *O]), strides and dilations swapped, cut to the kernel size and transposed back."""
    n = len(kernel)
    xs, gs = ctx.dims(x), ctx.dims(gy)
    static = xs is not None and gs is not None and all(isinstance(v, int) for v in xs[1:] + gs[1:])
    if (static and group == 1 and xs[1] >= IM2COL_MIN_CHANNELS and math.prod(kernel) <= IM2COL_MAX_TAPS
            and math.prod(kernel) * xs[1] * math.prod(gs[2:]) <= IM2COL_MAX_PER_SAMPLE):
        return _patch_weight_grad(ctx, x, gy, kernel, strides, dilations, pads)
    r = n + 2
    if group == 1:
        xt = ctx.op("Transpose", [x], perm=[1, 0] + list(range(2, r)))
    else:
        # C/g written -1 and then 0 (copied): the channel count may be known only at run time
        shape5 = ctx.op("Concat", [ctx.shape(x, 0, 1), ctx.ints([group, -1]), ctx.shape(x, 2)], axis=0)
        x5 = ctx.op("Reshape", [x, shape5])                        # [N, g, C/g, *S]
        x5 = ctx.op("Transpose", [x5], perm=[2, 1, 0] + list(range(3, r + 1)))  # [C/g, g, N, *S]
        shape_t = ctx.op("Concat", [ctx.ints([0, -1]), ctx.shape(x, 2)], axis=0)
        xt = ctx.op("Reshape", [x5, shape_t])                      # [C/g, g*N, *S]
    gt = ctx.op("Transpose", [gy], perm=[1, 0] + list(range(2, r)))  # [M, N, *O]
    w = ctx.op("Conv", [xt, gt], strides=dilations, dilations=strides, pads=pads,
               group=group if group != 1 else None)               # [C/g, M, *K']
    exact = xs is not None and gs is not None and all(isinstance(v, int) for v in xs[2:] + gs[2:]) and all(
        (xs[2 + i] + pads[i] + pads[i + n] - (gs[2 + i] - 1) * strides[i] - 1) // dilations[i] + 1 == kernel[i]
        for i in range(n))
    if not exact:  # positions no window reached make the result larger than the kernel
        w = ctx.op("Slice", [w, ctx.ints([0] * n), ctx.ints(kernel), ctx.ints(range(2, r))])
    return ctx.op("Transpose", [w], perm=[1, 0] + list(range(2, r)))


def _patch_weight_grad(ctx, x, gy, kernel, strides, dilations, pads):
    """dW = dY^T patches: the input channels-last and padded ([N, *S', C]); per kernel tap one
    strided Slice [N, *O, C]; concatenated on channels ([N, *O, taps*C]) and flattened; one
    MatMul by dY as [M, N*O]; reshaped to [M, *kernel, C] and transposed to [M, C, *kernel]."""
    n = len(kernel)
    r = n + 2
    c, out = ctx.dims(x)[1], ctx.dims(gy)[2:]
    xl = ctx.op("Transpose", [x], perm=[0] + list(range(2, r)) + [1])
    if any(pads):
        xl = ctx.op("Pad", [xl, ctx.ints([0] + list(pads[:n]) + [0, 0] + list(pads[n:]) + [0])])
    taps = []
    for offset in itertools.product(*[range(k) for k in kernel]):
        starts = [o * d for o, d in zip(offset, dilations)]
        ends = [s0 + (o - 1) * st + 1 for s0, o, st in zip(starts, out, strides)]
        taps.append(ctx.op("Slice", [xl, ctx.ints(starts), ctx.ints(ends), ctx.ints(range(1, n + 1)),
                                     ctx.ints(strides)]))
    patches = ctx.op("Reshape", [ctx.op("Concat", taps, axis=-1) if len(taps) > 1 else taps[0],
                                 ctx.ints([-1, len(taps) * c])])
    m = ctx.dims(gy)[1]
    g2 = ctx.op("Reshape", [ctx.op("Transpose", [gy], perm=[1, 0] + list(range(2, r))), ctx.ints([m, -1])])
    w = ctx.op("Reshape", [ctx.op("MatMul", [g2, patches]), ctx.ints([m] + list(kernel) + [c])])
    return ctx.op("Transpose", [w], perm=[0, n + 1] + list(range(1, n + 1)))


def bias_grad(ctx, gy, rank):
    return ctx.op("ReduceSum", [gy, ctx.ints([0] + list(range(2, rank)))], keepdims=0)


def conv_transpose(ctx, g, w, group, strides, pads, dilations, extra, x_dims, w_dims):
    """ConvTranspose(g, w) with ``group``. A grouped one whose output channels differ from its
    input channels is written as one ConvTranspose per group (Split, Concat): onnx.reference
    slices the weight by the wrong axis there; ONNX Runtime gets both forms right."""
    attrs = dict(strides=strides, pads=pads, dilations=dilations,
                 output_padding=extra if extra and any(extra) else None)
    c_out = None if x_dims is None else x_dims[1]
    m = None if w_dims is None else w_dims[0]
    if group == 1 or (isinstance(c_out, int) and c_out == m):
        return ctx.op("ConvTranspose", [g, w], group=group if group != 1 else None, **attrs)
    gs = ctx.op("Split", [g], group, axis=1, num_outputs=group) if ctx.opset >= 18 else \
        ctx.op("Split", [g, ctx.ints([m // group] * group)], group, axis=1)
    ws = ctx.op("Split", [w], group, axis=0, num_outputs=group) if ctx.opset >= 18 else \
        ctx.op("Split", [w, ctx.ints([m // group] * group)], group, axis=0)
    parts = [ctx.op("ConvTranspose", [a, b], **attrs) for a, b in zip(gs, ws)]
    return ctx.op("Concat", parts, axis=1)
