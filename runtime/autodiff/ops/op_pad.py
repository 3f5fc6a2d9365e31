"""Pad (mode constant; pads, constant_value, axes as inputs, known at build time or only at run time).

The adjoint crops what was added and pads back (with zeros) what was cropped: per axis, with
forward pads b (begin) and e (end), dX = Pad(Slice(dY, max(b, 0), max(b, 0) + n_kept), max(-b, 0),
max(-e, 0)). With pads known at build time that is one Slice (and a Pad only where the forward
cropped); otherwise the same is computed at run time. d constant_value = sum(dY) - sum(dX), the
sum over the padded positions. Modes reflect, edge and wrap, pads over chosen axes not known at
build time, and inputs of unknown rank take the general adjoint (_common.index_adjoint: the same
Pad applied to X's flat positions says where each output element came from; dY is added there)."""
import numpy as np

from onnxforge.runtime.autodiff.ops._common import attr, index_adjoint
from onnxforge.runtime.autodiff.ops._rule import ZERO

OP_TYPE = "Pad"
NON_DIFFERENTIABLE_INPUTS = (1, 3)


def _full_pads(ctx, node, r):
    """The pads as [begin..., end...] over all ``r`` axes: a numpy array when known, else a name."""
    pads = node.input[1] if len(node.input) > 1 else ""
    if not pads:
        pads_attr = attr(node, "pads")
        return np.array(pads_attr if pads_attr is not None else [0] * (2 * r), np.int64)
    axes_name = node.input[3] if len(node.input) > 3 else ""
    value = ctx.value(pads)
    if not axes_name:
        return value.astype(np.int64) if value is not None else pads
    axes = ctx.value(axes_name)
    if axes is None or value is None:
        # at run time: the pads scattered into [begin..., end...] at (axes mod r, axes mod r + r)
        a64 = axes_name if ctx.elem(axes_name) == 7 else ctx.op("Cast", [axes_name], to=7)
        a = ctx.op("Mod", [a64, ctx.const(np.array(r, np.int64))])
        where = ctx.op("Concat", [a, ctx.op("Add", [a, ctx.const(np.array(r, np.int64))])], axis=0)
        p64 = pads if ctx.elem(pads) == 7 else ctx.op("Cast", [pads], to=7)
        full = ctx.op("ScatterElements", [ctx.ints([0] * (2 * r)), where, p64], axis=0)
        ctx.info[full] = (7, [2 * r])
        return full
    full = np.zeros(2 * r, np.int64)
    k = len(axes)
    for i, a in enumerate(int(a) % r for a in axes):
        full[a], full[a + r] = value[i], value[i + k]
    return full


def vjp(ctx, node, dys, need):
    x, g = node.input[0], dys[0]
    r = ctx.rank(x)
    pads = _full_pads(ctx, node, r) if r is not None else None
    if attr(node, "mode", "constant") != "constant" or pads is None:
        dx = index_adjoint(ctx, node, g, blank=(2,))
        return [dx] + _pad_value_grad(ctx, node, g, dx, need)
    axes = ctx.ints(range(r))
    if isinstance(pads, np.ndarray):
        begin, end = pads[:r], pads[r:]
        start = np.maximum(begin, 0)
        crop_b, crop_e = np.maximum(-begin, 0), np.maximum(-end, 0)
        kept = ctx.op("Sub", [ctx.shape(x), ctx.ints(crop_b + crop_e)])
        dx = ctx.op("Slice", [g, ctx.ints(start), ctx.op("Add", [kept, ctx.ints(start)]), axes])
        if crop_b.any() or crop_e.any():
            dx = ctx.op("Pad", [dx, ctx.ints(np.concatenate([crop_b, crop_e]))])
    else:
        zero = ctx.ints([0])
        p64 = pads if ctx.elem(pads) == 7 else ctx.op("Cast", [pads], to=7)
        begin = ctx.op("Slice", [p64, ctx.ints([0]), ctx.ints([r])])
        end = ctx.op("Slice", [p64, ctx.ints([r]), ctx.ints([2 * r])])
        start = ctx.op("Max", [begin, zero])
        crop_b, crop_e = ctx.op("Max", [ctx.op("Neg", [begin]), zero]), ctx.op("Max", [ctx.op("Neg", [end]), zero])
        kept = ctx.op("Sub", [ctx.shape(x), ctx.op("Add", [crop_b, crop_e])])
        dx = ctx.op("Slice", [g, start, ctx.op("Add", [kept, start]), axes])
        dx = ctx.op("Pad", [dx, ctx.op("Concat", [crop_b, crop_e], axis=0)])
    dx = ctx.like(dx, x)
    return [dx] + _pad_value_grad(ctx, node, g, dx, need)


def _pad_value_grad(ctx, node, g, dx, need):
    """The gradients of the inputs after X: the pad value's (constant mode) is the sum of dY over
    the padded positions, sum(dY) - sum(dX); pads and axes carry none."""
    out = [None] * (len(node.input) - 1)
    if len(node.input) > 2 and node.input[2] and need[2]:
        if attr(node, "mode", "constant") != "constant":
            out[1] = ZERO
        else:
            total = ctx.op("Sub", [ctx.op("ReduceSum", [g], keepdims=0), ctx.op("ReduceSum", [dx], keepdims=0)])
            out[1] = ctx.like(ctx.op("Reshape", [total, ctx.shape(node.input[2])]), node.input[2])
    return out
