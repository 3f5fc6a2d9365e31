"""Cotangents of sequence values (the sequence ops' rules and the core share these).

The cotangent of a sequence is a sequence of the same length whose element ``i`` is the cotangent
of element ``i``. ``SequenceAt(S, p)`` contributes ``dY`` at one position only: its rule returns
:class:`At` (position, dY) instead of a whole sequence, and :func:`total` adds such entries into
the running sum in place (SequenceAt, Add, SequenceErase, SequenceInsert at that position), so a
sequence read element by element (GPT-2's SplitToSequence/SequenceAt) costs one zero sequence
and three small ops per read, not one whole-sequence sum per read."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from onnx import TensorProto, helper, numpy_helper

__all__ = ["At", "insert", "map_sequence", "normalized_position", "total", "zeros"]


@dataclass(frozen=True)
class At:
    """The cotangent ``dy`` at ``position`` of a sequence (zeros elsewhere)."""

    position: str
    dy: str


def _seq(ctx, name, elem):
    return ctx.mark_sequence(name, elem)


def normalized_position(ctx, seq: str, position: str) -> str:
    """``position`` (int32/int64, in [-n, n] for a sequence of n tensors) as a non-negative int64
    scalar: ``p + n`` where negative."""
    p = position if ctx.elem(position) == TensorProto.INT64 else ctx.op("Cast", [position], to=TensorProto.INT64)
    v = ctx.value(position)
    if v is not None and int(np.asarray(v)) >= 0:
        return p
    n = ctx.op("SequenceLength", [seq], elem=TensorProto.INT64)
    negative = ctx.op("Less", [p, ctx.const(np.array(0, np.int64))])
    return ctx.op("Where", [negative, ctx.op("Add", [p, n]), p], elem=TensorProto.INT64)


def map_sequence(ctx, seq: str, elem, body, *, out_sequence: bool = True, inputs=()):
    """A Loop over the elements of ``seq``: ``body(i, x_i)`` (emitting through ``ctx``) returns the
    name of one tensor per element. Returns a sequence of them (``out_sequence``) or the tensor
    that stacks them along a new first axis. ``inputs``: more sequences of the same length whose
    element ``i`` is passed after ``x_i``."""
    n = ctx.op("SequenceLength", [seq], elem=TensorProto.INT64)
    i, cond = ctx.fresh("i"), ctx.fresh("cond")
    acc_in, acc_out, item = ctx.fresh("acc"), ctx.fresh("acc"), []
    saved = ctx.nodes
    ctx.nodes = []
    try:
        xs = [ctx.op("SequenceAt", [s, i]) for s in (seq, *inputs)]
        for s, x in zip((seq, *inputs), xs):
            ctx.info[x] = (ctx.elem(s), None)
        item.append(body(i, *xs))
        cond_out = ctx.op("Identity", [cond])
        if out_sequence:
            ctx.nodes.append(helper.make_node("SequenceInsert", [acc_in, item[0]], [acc_out],
                                              name=ctx.fresh("node_seqinsert")))
        nodes = ctx.nodes
    finally:
        ctx.nodes = saved
    out_elem = ctx.elem(item[0]) or elem
    true = ctx.const(np.array(True))  # onnx.reference runs no iteration without a condition
    ins = [helper.make_tensor_value_info(i, TensorProto.INT64, []),
           helper.make_tensor_value_info(cond, TensorProto.BOOL, [])]
    outs = [helper.make_tensor_value_info(cond_out, TensorProto.BOOL, [])]
    if out_sequence:
        ins.append(helper.make_tensor_sequence_value_info(acc_in, out_elem, None))
        outs.append(helper.make_tensor_sequence_value_info(acc_out, out_elem, None))
        empty = ctx.op("SequenceEmpty", [], dtype=out_elem)
        res = ctx.op("Loop", [n, true, empty], body=helper.make_graph(nodes, ctx.fresh("map"), ins, outs))
        return _seq(ctx, res, out_elem)
    outs.append(helper.make_tensor_value_info(item[0], out_elem, None))
    return ctx.op("Loop", [n, true], body=helper.make_graph(nodes, ctx.fresh("map"), ins, outs), elem=out_elem)


def zeros(ctx, seq: str) -> str:
    """A sequence of zero tensors shaped like the elements of ``seq``."""
    elem = ctx.elem(seq)
    value = numpy_helper.from_array(np.zeros(1, helper.tensor_dtype_to_np_dtype(elem)))
    return map_sequence(ctx, seq, elem, lambda i, x: ctx.op("ConstantOfShape", [ctx.op("Shape", [x])],
                                                              value=value, elem=elem))


def insert(ctx, seq: str, x: str, position: str) -> str:
    """SequenceInsert of ``x`` at non-negative ``position`` (which may be the length: the end),
    the end written as an append: onnx.reference inserts at 0 when given the length."""
    elem = ctx.elem(seq)
    at_end = ctx.op("Equal", [position, ctx.op("SequenceLength", [seq], elem=TensorProto.INT64)])
    out_t, out_e = ctx.fresh("appended"), ctx.fresh("inserted")
    branches = []
    for out, inputs in ((out_t, [seq, x]), (out_e, [seq, x, position])):
        branches.append(helper.make_graph(
            [helper.make_node("SequenceInsert", inputs, [out], name=ctx.fresh("node_seqinsert"))], ctx.fresh("branch"),
            [], [helper.make_tensor_sequence_value_info(out, elem, None)]))
    return _seq(ctx, ctx.op("If", [at_end], then_branch=branches[0], else_branch=branches[1]), elem)


def _add(ctx, a: str, b: str) -> str:
    return map_sequence(ctx, a, ctx.elem(a), lambda i, x, y: ctx.op("Add", [x, y]), inputs=(b,))


def total(ctx, name: str, terms: list) -> str:
    """The cotangent of sequence ``name``: the sum of ``terms`` (sequence names and :class:`At`)."""
    elem = ctx.elem(name)
    whole = [t for t in terms if not isinstance(t, At)]
    acc = whole[0] if whole else zeros(ctx, name)
    for t in whole[1:]:
        acc = _add(ctx, acc, t)
    for t in terms:
        if isinstance(t, At):
            # the sum put in before the old element, which is then erased: SequenceInsert at the
            # end by position (p == length) is what onnx.reference gets wrong (it inserts at 0)
            p = normalized_position(ctx, name, t.position)
            cur = ctx.op("SequenceAt", [acc, p], elem=elem)
            grown = _seq(ctx, ctx.op("SequenceInsert", [acc, ctx.op("Add", [cur, t.dy], elem=elem), p]), elem)
            after = ctx.op("Add", [p, ctx.const(np.array(1, np.int64))], elem=TensorProto.INT64)
            acc = _seq(ctx, ctx.op("SequenceErase", [grown, after]), elem)
    return _seq(ctx, acc, elem)
