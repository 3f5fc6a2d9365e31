"""Small helpers the rules share."""

from __future__ import annotations

import numpy as np

from onnxforge.runtime.autodiff._emitter import attr  # noqa: F401 - re-exported for the rules


def mul(ctx, a, b, like=None):
    return ctx.like(ctx.op("Mul", [a, b]), like or a)


def where_positive(ctx, test, g, value_if_not=0.0):
    """``g`` where ``test > 0``, ``value_if_not`` (a scalar) elsewhere."""
    mask = ctx.op("Greater", [test, ctx.scalar(0.0, test)])
    return ctx.like(ctx.op("Where", [mask, g, ctx.scalar(value_if_not, g)]), g)


def axes_value(ctx, node, index: int, attribute: str = "axes"):
    """A reduction/squeeze axes list from the attribute (older opsets) or the input ``index``
    when it is known at build time; ``[]`` when absent; ``None`` when only known at run time."""
    a = attr(node, attribute)
    if a is not None:
        return list(a)
    if len(node.input) > index and node.input[index]:
        v = ctx.value(node.input[index])
        return None if v is None else [int(x) for x in np.atleast_1d(v)]
    return []


def normalize(axes, rank):
    return sorted(a + rank if a < 0 else a for a in axes)


def unbroadcast_binary(ctx, node, ga, gb, need):
    """The two gradients of a broadcasting binary op, each summed back to its input's shape."""
    y_dims = ctx.dims(node.output[0])
    out = [None, None]
    for i, g in enumerate((ga, gb)):
        if need[i] and g is not None:
            if y_dims is not None and g not in ctx.info:
                ctx.info[g] = (ctx.elem(node.input[i]), y_dims)
            out[i] = ctx.reduce_to(g, node.input[i], y_dims)
    return out
