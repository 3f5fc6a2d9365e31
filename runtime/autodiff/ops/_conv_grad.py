"""Formulations of a Conv's gradients that ONNX Runtime's CPU kernels run faster than the general
ones in :mod:`._conv_common` (ConvTranspose for dX, a Conv over swapped axes for dW), each chosen
from the static shapes and attributes it needs, ``None`` where it does not apply (the caller then
falls back to the general one). What was measured, and what lost: docs/notes/training-speed.md,
"Convolution backward"; tests/runtime/autodiff/bench_conv_backward.py reruns it.

* :func:`flipped_input_grad`: dX of a stride-1 Conv as a Conv of dY by the kernel flipped along
  its spatial axes and transposed within each group (the adjoint of a stride-1 correlation is the
  correlation with the flipped kernel), pads ``span - pads``. ONNX Runtime's ConvTranspose runs
  a GEMM and a col2im per image and group; the Conv's im2col is cheaper.
* :func:`depthwise_weight_grad`: dW [C, 1, *k] of a depthwise Conv (group = C = M) as one
  multiply-and-sum per kernel tap: the padded input shifted by the tap (a strided Slice) times dY,
  summed over the batch and the spatial axes. The Conv over swapped axes is one GEMM per channel
  whose im2col copies rows of ``k`` values.
* :func:`pointwise_weight_grad`: dW of a 1x1 Conv as one MatMul per sample (dY by X^T), summed
  over the batch.
* :func:`tap_patch_weight_grad`: dW from the input's patches as one MatMul per tap (batched over
  the groups), with no Concat of the taps along the channel axis (im2col's costliest copy).
"""

from __future__ import annotations

import itertools
import math

from onnxforge.runtime.autodiff.ops import _conv_common as cc

INT64_MIN = -(2 ** 63)
# dX as the flipped Conv for a dense (group 1) kernel wider than 1x1 only from this many output
# positions per image: below, ConvTranspose was as fast or faster (the ConvNet's 4x4 layer: 0.6x)
FLIPPED_MIN_POSITIONS = 256
# the per-tap multiply-and-sum for depthwise dW up to this many taps (3x3); 5x5 and strided lost
DEPTHWISE_TAPS_MAX = 9
# the per-tap patches MatMul from this many input channels per group (below, the Conv over swapped axes)
PATCH_MIN_CHANNELS = 8


def input_grad(ctx, g, w, group, kernel, strides, dilations, pads, out_dims):
    """dX by the fastest measured formulation that applies, or ``None`` (the caller's ConvTranspose)."""
    positions = math.prod(out_dims[2:]) if _static(out_dims, 2) else 0
    if group != 1 or math.prod(kernel) == 1 or positions >= FLIPPED_MIN_POSITIONS:
        return flipped_input_grad(ctx, g, w, group, kernel, strides, dilations, pads)
    return None


def weight_grad(ctx, x, gy, group, kernel, strides, dilations, pads, w_dims):
    """dW by the fastest measured formulation that applies (the general one of
    :func:`._conv_common.weight_grad` otherwise): 1x1 stride 1, the per-sample MatMul; depthwise
    3x3 stride 1, the taps; a kernel wider than 1x1 with at least 8 input channels per group
    (group 1, or grouped at stride 1) and patches of at most 2^19 values per sample (as
    measured), the patches with one MatMul per tap."""
    dw = None
    taps = math.prod(kernel)
    stride1 = all(s == 1 for s in strides)
    if taps == 1 and stride1 and group == 1 and not any(pads):
        dw = pointwise_weight_grad(ctx, x, gy, w_dims)
    if dw is None and stride1 and taps <= DEPTHWISE_TAPS_MAX:
        dw = depthwise_weight_grad(ctx, x, gy, group, kernel, strides, dilations, pads, w_dims)
    gd = ctx.dims(gy)
    if dw is None and 1 < taps <= cc.IM2COL_MAX_TAPS and _static(w_dims, 0) and w_dims[1] >= PATCH_MIN_CHANNELS \
            and (group == 1 or stride1) and _static(gd, 2) \
            and taps * w_dims[1] * group * math.prod(gd[2:]) <= cc.IM2COL_MAX_PER_SAMPLE:
        dw = tap_patch_weight_grad(ctx, x, gy, group, kernel, strides, dilations, pads, w_dims)
    return dw if dw is not None else cc.weight_grad(ctx, x, gy, group, kernel, strides, dilations, pads)


def _static(dims, start=1):
    return dims is not None and all(isinstance(v, int) for v in dims[start:])


def flipped_input_grad(ctx, g, w, group, kernel, strides, dilations, pads):
    """dX of ``Y = Conv(X, W)`` (stride 1) as ``Conv(dY, flip(W^T per group))``; ``None`` when a
    stride is not 1, a pad exceeds the kernel's span (the Conv would need negative pads) or W's
    channel dims are unknown."""
    n = len(kernel)
    wd = ctx.dims(w)
    if any(s != 1 for s in strides) or not _static(wd, 0):
        return None
    span = [(k - 1) * d for k, d in zip(kernel, dilations)]
    adj = [span[i] - pads[i] for i in range(n)] + [span[i] - pads[n + i] for i in range(n)]
    if any(p < 0 for p in adj):
        return None
    m, cg = wd[0], wd[1]
    r = n + 2
    if group == 1:
        wt = ctx.op("Transpose", [w], perm=[1, 0] + list(range(2, r)))           # [C, M, *k]
    elif cg == 1 and m == group:
        wt = w                                                                      # depthwise: [C, 1, *k]
    else:
        w5 = ctx.op("Reshape", [w, ctx.ints([group, m // group, cg] + list(kernel))])
        w5 = ctx.op("Transpose", [w5], perm=[0, 2, 1] + list(range(3, r + 1)))     # [g, C/g, M/g, *k]
        wt = ctx.op("Reshape", [w5, ctx.ints([group * cg, m // group] + list(kernel))])
    axes = list(range(2, r))
    wf = ctx.op("Slice", [wt, ctx.ints([-1] * n), ctx.ints([INT64_MIN] * n), ctx.ints(axes), ctx.ints([-1] * n)])
    return ctx.op("Conv", [g, wf], pads=adj, dilations=dilations, group=group if group != 1 else None)


def _tap_slices(ctx, xp, out, kernel, strides, dilations, first_axis):
    """One strided Slice of ``xp`` per kernel tap (row-major over the kernel), each of spatial size
    ``out``, the spatial axes starting at ``first_axis``."""
    n = len(kernel)
    axes = ctx.ints(range(first_axis, first_axis + n))
    steps = ctx.ints(strides)
    for offset in itertools.product(*[range(k) for k in kernel]):
        starts = [o * d for o, d in zip(offset, dilations)]
        ends = [s0 + (o - 1) * st + 1 for s0, o, st in zip(starts, out, strides)]
        yield ctx.op("Slice", [xp, ctx.ints(starts), ctx.ints(ends), axes, steps])


def depthwise_weight_grad(ctx, x, gy, group, kernel, strides, dilations, pads, w_dims):
    """dW [C, 1, *k] of a depthwise Conv (group = C = M) as, per tap, ReduceSum(shifted padded X *
    dY) over the batch and spatial axes; ``None`` unless depthwise with static spatial dims."""
    n = len(kernel)
    gd = ctx.dims(gy)
    if not (_static(w_dims, 0) and w_dims[1] == 1 and w_dims[0] == group and _static(gd, 2)):
        return None
    xp = x
    if any(pads):
        xp = ctx.op("Pad", [x, ctx.ints([0, 0] + list(pads[:n]) + [0, 0] + list(pads[n:]))])
    axes = ctx.ints([0] + list(range(2, n + 2)))
    cols = [ctx.op("Unsqueeze", [ctx.op("ReduceSum", [ctx.op("Mul", [sl, gy]), axes], keepdims=0), ctx.ints([1])])
            for sl in _tap_slices(ctx, xp, gd[2:], kernel, strides, dilations, 2)]
    taps = ctx.op("Concat", cols, axis=1) if len(cols) > 1 else cols[0]             # [C, taps]
    return ctx.op("Reshape", [taps, ctx.ints([group, 1] + list(kernel))])




def tap_patch_weight_grad(ctx, x, gy, group, kernel, strides, dilations, pads, w_dims, per_tap=True):
    """dW from the input's patches without the channel-axis Concat of im2col: the input laid out
    [g, N, *S', C/g] (channels-last within each group, padded), one strided Slice per tap
    flattened to [g, N*O, C/g], and either one MatMul per tap by dY as [g, M/g, N*O]
    (``per_tap``) or the slices stacked tap-major (a Concat of whole blocks) and one MatMul;
    [taps, g, M/g, C/g] -> [M, C/g, *k]."""
    n = len(kernel)
    xd, gd = ctx.dims(x), ctx.dims(gy)
    if not (_static(w_dims, 0) and _static(xd) and _static(gd)):
        return None
    m, cg, r = w_dims[0], w_dims[1], n + 2
    mg = m // group
    if group == 1:
        xl = ctx.op("Unsqueeze", [ctx.op("Transpose", [x], perm=[0] + list(range(2, r)) + [1]), ctx.ints([0])])
        g3 = ctx.op("Transpose", [gy], perm=[1, 0] + list(range(2, r)))
    else:
        x5 = ctx.op("Reshape", [x, ctx.ints([0, group, cg] + list(xd[2:]))])
        xl = ctx.op("Transpose", [x5], perm=[1, 0] + list(range(3, r + 1)) + [2])
        g3 = ctx.op("Reshape", [gy, ctx.ints([0, group, mg] + list(gd[2:]))])
        g3 = ctx.op("Transpose", [g3], perm=[1, 2, 0] + list(range(3, r + 1)))
    g3 = ctx.op("Reshape", [g3, ctx.ints([group, mg, -1])])                            # [g, M/g, N*O]
    if any(pads):
        xl = ctx.op("Pad", [xl, ctx.ints([0, 0] + list(pads[:n]) + [0] * 3 + list(pads[n:]) + [0])])
    flat = ctx.ints([group, -1, cg])
    slices = [ctx.op("Reshape", [sl, flat]) for sl in _tap_slices(ctx, xl, gd[2:], kernel, strides, dilations, 2)]
    if per_tap:
        parts = [ctx.op("Unsqueeze", [ctx.op("MatMul", [g3, sl]), ctx.ints([0])]) for sl in slices]
        dw = ctx.op("Concat", parts, axis=0) if len(parts) > 1 else parts[0]         # [taps, g, M/g, C/g]
    else:
        stacked = ctx.op("Reshape", [ctx.op("Concat", slices, axis=0), ctx.ints([len(slices), group, -1, cg])])
        dw = ctx.op("MatMul", [g3, stacked])
    return ctx.op("Reshape", [ctx.op("Transpose", [dw], perm=[1, 2, 3, 0]), ctx.ints(w_dims)])




def pointwise_weight_grad(ctx, x, gy, w_dims):
    """dW [M, C, 1...] of a 1x1, stride-1, unpadded, ungrouped Conv as one MatMul per sample, dY
    [N, M, S] by X^T [N, S, C], summed over the batch: no layout change of dY and the sum over
    positions inside the GEMM. ``None`` where the per-sample products [N, M, C] would outgrow
    the inputs (M*C > S*(M+C): a 1x1 Conv on a tiny image, where it lost 12x)."""
    xd = ctx.dims(x)
    if not (_static(w_dims, 0) and _static(xd)):
        return None
    m, c, size = w_dims[0], w_dims[1], math.prod(xd[2:])
    if m * c > size * (m + c):
        return None
    x3 = ctx.op("Reshape", [x, ctx.ints([0, c, size])])
    g3 = ctx.op("Reshape", [gy, ctx.ints([0, m, size])])
    per = ctx.op("MatMul", [g3, ctx.op("Transpose", [x3], perm=[0, 2, 1])])            # [N, M, C]
    return ctx.op("Reshape", [ctx.op("ReduceSum", [per, ctx.ints([0])], keepdims=0), ctx.ints(w_dims)])
