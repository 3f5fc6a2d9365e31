"""Concat (axis): each input's gradient is its slab of dY, cut by one Split whose sizes are
the inputs' extents along the axis (known at build time or read with Shape; a negative axis
needs no rank, which an expanded RotaryEmbedding's Concat lacks)."""
from onnxforge.runtime.autodiff.ops._common import attr

OP_TYPE = "Concat"


def vjp(ctx, node, dys, need):
    axis = attr(node, "axis")
    inputs = [x for x in node.input]
    r = ctx.rank(node.output[0])
    if axis < 0 and r is not None:
        axis += r
    end = None if axis == -1 else axis + 1  # a negative axis works without the rank
    sizes = [ctx.shape(x, axis, end) for x in inputs]
    split = ctx.op("Concat", sizes, axis=0)
    parts = ctx.op("Split", [dys[0], split], len(inputs), axis=axis)
    parts = [parts] if len(inputs) == 1 else parts
    return [ctx.like(p, x) if n else None for p, x, n in zip(parts, inputs, need)]
