"""MaxPool (auto_pad, ceil_mode, dilations, kernel_shape, pads, strides; storage_order 0).

Strided or dilated pools: dY is added at the input positions the Indices output names
(ScatterElements, reduction "add", over the flattened input); the forward node is made to output
Indices when it does not (flat positions in the whole input, as the spec says).

Stride-1 undilated pools (overlapping windows): onnx.reference's Indices are wrong there, so the
gradient is built from primitives instead: for each kernel offset, in window order, the input
shifted by it is compared with Y; the first offset that holds the maximum takes dY (ties go to
the first, as in PyTorch and ONNX Runtime), and one ConvTranspose with a one-hot kernel per
offset puts every offset's share back in place."""
import itertools

import numpy as np
from onnx import numpy_helper

from onnxforge.runtime.autodiff.ops import _conv_common as cc
from onnxforge.runtime.autodiff.ops._common import attr

OP_TYPE = "MaxPool"


def check(node, info):
    if attr(node, "storage_order", 0) != 0:
        return "storage_order=1 (column-major Indices) is not covered"
    x_dims = info.get(node.input[0], (None, None))[1]
    if cc.geometry(node, x_dims)[3] is None:
        return "auto_pad needs the spatial input dims, which shape inference could not find"
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


def vjp(ctx, node, dys, need):
    x, y, g = node.input[0], node.output[0], dys[0]
    if g is None:
        return [None]
    kernel, strides, dilations, pads, _ = cc.geometry(node, ctx.dims(x))
    if all(s == 1 for s in strides) and all(d == 1 for d in dilations):
        return [ctx.like(_by_offsets(ctx, x, y, g, kernel, pads), x)]
    return [ctx.like(_by_indices(ctx, node, x, g), x)]
