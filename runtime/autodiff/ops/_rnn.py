"""Pieces the recurrent rules (LSTM, GRU) share: time reversal, one direction's parameters,
the previous hidden state of every step, zeros, and nodes emitted inside a Scan body."""

from __future__ import annotations

import numpy as np
from onnx import helper, numpy_helper


def reverse(ctx, x):
    """``x`` reversed along axis 0 (time)."""
    return ctx.op("Slice", [x, ctx.ints([-1]), ctx.ints([-(2 ** 62)]), ctx.ints([0]), ctx.ints([-1])])


def zeros_value(dtype):
    """The ``value`` of a ConstantOfShape of zeros of ``dtype``."""
    return numpy_helper.from_array(np.zeros(1, dtype))


def node(ctx, op, inputs, outputs, **attrs):
    """A node with given output names (a Scan body's declared outputs)."""
    return helper.make_node(op, inputs, outputs, name=ctx.fresh(f"node_{op.lower()}"), **attrs)


def select(ctx, t, d):
    """Direction ``d`` of a [num_directions, ...] parameter: ``t[d]``."""
    return ctx.op("Squeeze", [ctx.op("Gather", [t, ctx.ints([d])], axis=0), ctx.ints([0])])


def directions(node, attr):
    """``[False]``, ``[True]`` or ``[False, True]``: whether each direction runs reversed."""
    direction = attr(node, "direction", "forward")
    return [False] if direction == "forward" else [True] if direction == "reverse" else [False, True]


def previous_states(ctx, x, y, d, reverse_time, h0, hidden):
    """``(yd, h_prev)`` in processing order: direction ``d`` of ``Y`` [T, N, H], and the hidden
    state before every step (``h0``, or zeros, then Y without its last step)."""
    yd = ctx.op("Squeeze", [ctx.op("Gather", [y, ctx.ints([d])], axis=1), ctx.ints([1])])
    yd = reverse(ctx, yd) if reverse_time else yd
    if h0:
        first = ctx.op("Unsqueeze", [select(ctx, h0, d), ctx.ints([0])])
    else:
        nh = ctx.op("Concat", [ctx.ints([1]), ctx.shape(x, 1, 2), ctx.ints([hidden])], axis=0)
        first = ctx.op("ConstantOfShape", [nh], value=zeros_value(ctx.np_dtype(x)))
    steps_m1 = ctx.op("Sub", [ctx.shape(x, 0, 1), ctx.ints([1])])
    h_prev = ctx.op("Concat", [first, ctx.op("Slice", [yd, ctx.ints([0]), steps_m1, ctx.ints([0])])], axis=0)
    return yd, h_prev, steps_m1


def stack_directions(ctx, per, key):
    """Per-direction gradients of a [num_directions, ...] input, stacked back."""
    if len(per) == 1:
        return ctx.op("Unsqueeze", [per[0][key], ctx.ints([0])])
    return ctx.op("Concat", [ctx.op("Unsqueeze", [p[key], ctx.ints([0])]) for p in per], axis=0)
