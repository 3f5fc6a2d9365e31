"""The shared rule of ScatterElements and ScatterND (reduction none or add): the updates' gradient
is dY read at the scattered positions (GatherElements / GatherND); the data's is dY, with the
overwritten positions zeroed when reduction is none. Reductions mul, max and min are refused."""
import numpy as np

from onnxforge.runtime.autodiff.ops._common import attr


def check(node, info):
    r = attr(node, "reduction", "none")
    return None if r in ("none", "add") else f"reduction {r!r} is not covered (none and add are)"


def vjp(ctx, node, dys, need, gather, **attrs):
    data, idx, upd = node.input
    g = dys[0]
    out = [None, None, None]
    if need[0]:
        if attr(node, "reduction", "none") == "none":
            out[0] = ctx.like(ctx.op(node.op_type, [g, idx, ctx.zeros_like(upd)], **attrs), data)
        else:
            out[0] = g
    if need[2]:
        src = g
        if gather == "GatherElements":  # dY cut to the indices' extent off the axis (as the spec reads it)
            r = ctx.need_rank(idx)
            axis = attrs["axis"] % r
            big = ctx.ints([np.iinfo(np.int64).max] * r)
            on_axis = ctx.const(np.arange(r) == axis)
            src = ctx.op("Slice", [g, ctx.ints([0] * r), ctx.op("Where", [on_axis, big, ctx.shape(idx)])])
        out[2] = ctx.like(ctx.op(gather, [src, idx], **attrs), upd)
    return out
