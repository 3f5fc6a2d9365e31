"""Concat (axis): each input's gradient is its slab of dY, cut by one Split whose sizes are
the inputs' extents along the axis (known at build time or read with Shape, also when the rank is
known only at run time)."""
from onnxforge.runtime.autodiff.ops._common import attr

OP_TYPE = "Concat"


def vjp(ctx, node, dys, need):
    axis = attr(node, "axis")
    inputs = [x for x in node.input]
    r = ctx.rank(node.output[0])
    if r is not None:
        axis = axis + r if axis < 0 else axis
        sizes = [ctx.shape(x, axis, axis + 1) for x in inputs]
    else:  # rank known only at run time: a negative axis is read as Gather does
        sizes = [ctx.op("Gather", [ctx.op("Shape", [x]), ctx.ints([axis])]) for x in inputs]
    split = ctx.op("Concat", sizes, axis=0)
    parts = ctx.op("Split", [dys[0], split], len(inputs), axis=axis)
    parts = [parts] if len(inputs) == 1 else parts
    return [ctx.like(p, x) if n else None for p, x, n in zip(parts, inputs, need)]
