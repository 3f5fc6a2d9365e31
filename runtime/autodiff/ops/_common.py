"""Small helpers the rules share."""

from __future__ import annotations

import numpy as np

from onnxforge.runtime.autodiff._emitter import attr


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


def reduce(ctx, op, x, axes, keepdims=1):
    """``op`` (ReduceSum, ReduceMean, ...) of ``x`` over ``axes`` (ints), in the form the opset
    takes: axes as an input (ReduceSum from 13, the others from 18) or as an attribute."""
    axes = list(axes)
    if op == "ReduceSum" and ctx.opset >= 13 or ctx.opset >= 18:
        return ctx.op(op, [x, ctx.ints(axes)], keepdims=keepdims)
    return ctx.op(op, [x], keepdims=keepdims, axes=axes)


def index_adjoint(ctx, node, g, x_index=0, blank=()):
    """The adjoint of an op that only moves, copies or drops elements of input ``x_index``
    (Tile, DepthToSpace, Pad in any mode, GatherND, Compress...): the same node applied to the
    grid of X's flat positions (1-based; 0 where the op fills in a value of its own) says where
    each output element came from, and dY is added there (ScatterElements "add"). Inputs listed
    in ``blank`` (a float pad value) are left out of that node."""
    from onnx import numpy_helper

    x = node.input[x_index]
    shape = ctx.shape(x)
    size = ctx.op("ReduceProd", [shape], keepdims=0)
    one = ctx.const(np.array(1, np.int64))
    grid = ctx.op("Reshape", [ctx.op("Range", [one, ctx.op("Add", [size, one]), one]), shape])
    inputs = ["" if i in blank else name for i, name in enumerate(node.input)]
    inputs[x_index] = grid
    attrs = {a.name: _attr_value(a) for a in node.attribute}
    picked = ctx.op(node.op_type, inputs, elem=7, **attrs)
    zeros = ctx.op("ConstantOfShape", [ctx.op("Reshape", [ctx.op("Add", [size, one]), ctx.ints([1])])],
                   value=numpy_helper.from_array(np.zeros(1, ctx.np_dtype(g))))
    flat = ctx.ints([-1])
    scattered = ctx.op("ScatterElements", [zeros, ctx.op("Reshape", [picked, flat]), ctx.op("Reshape", [g, flat])],
                       axis=0, reduction="add")
    kept = ctx.op("Slice", [scattered, ctx.ints([1]), ctx.ints([np.iinfo(np.int64).max])])
    return ctx.like(ctx.op("Reshape", [kept, ctx.target_shape(x)]), x)


def _attr_value(a):
    from onnx import helper

    v = helper.get_attribute_value(a)
    return v.decode() if isinstance(v, bytes) else v
