"""MaxPool (auto_pad, ceil_mode, dilations, kernel_shape, pads, strides; storage_order 0).

Tiling pools (window == stride, no dilation or pads, static spatial dims divisible by the window,
at most 16 windows per channel: the builders' pools on small images) need no Indices, which cost
ONNX Runtime 1.19 a slow MaxPool kernel (252 us with them, 5 us without, on [64, 16, 8, 8]).
With the input as [N*C, S] (S pixels) and E [P, S] the 0/1 matrix placing each of the P windows
over its pixels, ``up(t) = t E`` spreads a per-window value to its pixels (one MatMul, exact for
finite values). The pixels equal to ``up(Y)`` hold the maximum; scored by ``K - (row-major
position in the window)``, each window's best score (a MaxPool of the scores) marks its first
maximum, where PyTorch and ONNX Runtime's Indices put the gradient on ties; dX is that mask
times ``up(dY)``. Measured alternating in one process, one thread, forward and gradient:
473-565 us against 657-714 us for the Indices form on [64, 16, 8, 8], 202-286 against 234-343
on [64, 32, 4, 4]; but 3.9 ms against 3.0 ms on [64, 16, 16, 16] (64 windows: the MatMuls grow
as P*S), hence :data:`TILING_MAX_WINDOWS`.

Other strided or dilated pools: dY is added at the input positions the Indices output names
(ScatterElements, reduction "add", over the flattened input); the forward node is made to output
Indices when it does not (flat positions in the whole input, as the spec says).

Stride-1 undilated pools (overlapping windows): onnx.reference's Indices are wrong there, so the
gradient is built from primitives instead: for each kernel offset, in window order, the input
shifted by it is compared with Y; the first offset that holds the maximum takes dY (ties go to
the first, as in PyTorch and ONNX Runtime), and one ConvTranspose with a one-hot kernel per
offset puts every offset's share back in place. auto_pad SAME_* over symbolic spatial dims (pads
known only at run time) takes the Indices form, which needs no pads."""
import itertools
import math

import numpy as np
from onnx import numpy_helper

from onnxforge.runtime.autodiff.ops import _conv_common as cc
from onnxforge.runtime.autodiff.ops._common import attr

OP_TYPE = "MaxPool"


def check(node, info):
    if attr(node, "storage_order", 0) != 0:
        return "storage_order=1 (column-major Indices) is not covered"
    return None


def _by_indices(ctx, node, x, g):
    idx = ctx.ensure_output(node, 1, "maxpool_indices")
    flat = ctx.ints([-1])
    size = ctx.op("Size", [x])
    zeros = ctx.op("ConstantOfShape", [ctx.op("Reshape", [size, ctx.ints([1])])],
                   value=numpy_helper.from_array(np.zeros(1, ctx.np_dtype(g))))
    scattered = ctx.op("ScatterElements", [zeros, ctx.op("Reshape", [idx, flat]), ctx.op("Reshape", [g, flat])],
                       axis=0, reduction="add")
    return ctx.op("Reshape", [scattered, ctx.target_shape(x)])


def _by_offsets(ctx, x, y, g, kernel, pads):
    n = len(kernel)
    dt = ctx.np_dtype(g)
    xp = x
    if any(pads):
        full = [0, 0] + list(pads[:n]) + [0, 0] + list(pads[n:])
        xp = ctx.op("Pad", [x, ctx.ints(full), ctx.const(np.array(-np.inf, dt))])
    out_sp = ctx.shape(y, 2)
    cols = ctx.op("Concat", [ctx.ints([-1, 1]), out_sp], axis=0)
    gf = ctx.op("Reshape", [g, cols])                       # [N*C, 1, *O]
    zero = ctx.scalar(0.0, g)
    offsets = list(itertools.product(*[range(k) for k in kernel]))
    taken, parts = None, []
    for j, off in enumerate(offsets):
        start = ctx.ints(off)
        shifted = ctx.op("Slice", [xp, start, ctx.op("Add", [start, out_sp]), ctx.ints(range(2, n + 2))])
        eq = ctx.op("Reshape", [ctx.op("Equal", [shifted, y]), cols])
        sel = eq if taken is None else ctx.op("And", [eq, ctx.op("Not", [taken])])
        if j < len(offsets) - 1:
            taken = eq if taken is None else ctx.op("Or", [taken, eq])
        parts.append(ctx.op("Where", [sel, gf, zero]))
    stack = ctx.op("Concat", parts, axis=1)                 # [N*C, K, *O]
    w = np.zeros([len(offsets), 1] + list(kernel), dt)
    for j, off in enumerate(offsets):
        w[(j, 0) + tuple(off)] = 1
    dx = ctx.op("ConvTranspose", [stack, ctx.const(w)], pads=list(pads))
    return ctx.op("Reshape", [dx, ctx.target_shape(x)])


# The tiling form's three MatMuls cost P*S multiply-adds per channel (P windows, S pixels): at 64
# windows they already cost more than the Indices form (see the module docstring).
TILING_MAX_WINDOWS = 16


def _tiling(ctx, x, kernel, strides, dilations, pads):
    """The spatial dims of ``x`` when the pool tiles them (see the module docstring), else None."""
    dims = ctx.dims(x)
    if dims is None or len(dims) != len(kernel) + 2:
        return None
    spatial = dims[2:]
    if any(not isinstance(d, int) or d <= 0 for d in spatial):
        return None
    if list(kernel) != list(strides) or any(d != 1 for d in dilations) or any(pads):
        return None
    if any(d % k for d, k in zip(spatial, kernel)) or math.prod(spatial) // math.prod(kernel) > TILING_MAX_WINDOWS:
        return None
    return spatial


def _tiles(spatial, kernel, dt):
    """``(E, T)``: E [P, S] is 1 where pixel s lies in window p; T [S] is K minus the pixel's
    row-major position in its window (K taps), so a window's first maximum scores highest."""
    pixels = np.indices(spatial).reshape(len(spatial), -1)
    window = np.ravel_multi_index(tuple(pixels // np.array(kernel)[:, None]),
                                  [d // k for d, k in zip(spatial, kernel)])
    tap = np.ravel_multi_index(tuple(pixels % np.array(kernel)[:, None]), kernel)
    e = np.zeros((int(window.max()) + 1, pixels.shape[1]), dt)
    e[window, np.arange(pixels.shape[1])] = 1
    return e, (math.prod(kernel) - tap).astype(dt)


def _by_tiles(ctx, x, y, g, kernel, spatial):
    """dX of a tiling pool without Indices (see the module docstring)."""
    e, score = _tiles(spatial, kernel, ctx.np_dtype(g))
    windows, pixels, e = ctx.ints([-1, e.shape[0]]), ctx.ints([-1, e.shape[1]]), ctx.const(e)

    def up(t):  # per window [N*C, P] -> per pixel [N*C, S], exact for finite values
        return ctx.op("MatMul", [ctx.op("Reshape", [t, windows]), e])

    hits = ctx.op("Cast", [ctx.op("Equal", [ctx.op("Reshape", [x, pixels]), up(y)])], to=ctx.elem(g))
    scored = ctx.op("Mul", [hits, ctx.const(score)])
    best = ctx.op("MaxPool", [ctx.op("Reshape", [scored, ctx.target_shape(x)])], kernel_shape=list(kernel),
                  strides=list(kernel))
    first = ctx.op("Cast", [ctx.op("Equal", [scored, up(best)])], to=ctx.elem(g))
    return ctx.op("Reshape", [ctx.op("Mul", [first, up(g)]), ctx.target_shape(x)])


def vjp(ctx, node, dys, need):
    x, y, g = node.input[0], node.output[0], dys[0]
    if g is None:
        return [None]
    kernel, strides, dilations, pads, _ = cc.geometry(node, ctx.dims(x))
    if pads is None:  # auto_pad SAME_* over symbolic spatial dims: the Indices need no pads
        return [ctx.like(_by_indices(ctx, node, x, g), x)]
    spatial = _tiling(ctx, x, kernel, strides, dilations, pads)
    if spatial is not None:
        return [ctx.like(_by_tiles(ctx, x, y, g, kernel, spatial), x)]
    if all(s == 1 for s in strides) and all(d == 1 for d in dilations):
        return [ctx.like(_by_offsets(ctx, x, y, g, kernel, pads), x)]
    return [ctx.like(_by_indices(ctx, node, x, g), x)]
