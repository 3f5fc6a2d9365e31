"""Padding that a token LSTM does not read: the steps after each row's last non-PAD token.

:class:`TokenSteps` finds them; the unrolled LSTM masks its recurrence with ``valid``
(``graphs/_lstm_unrolled.py``), and an ``LSTM`` node (trainable by ONNX Runtime, so no
``sequence_lens``) keeps its cell state through them with :func:`skip_padding` and takes its
final ``h`` at ``last``. Used by the seq2seq encoder and the token models of ``graphs/lstm.py``.
"""

from __future__ import annotations

import numpy as np
import onnx

from onnxforge.graphs._common import GraphBuilder

__all__ = ["PAD", "TokenSteps", "skip_padding"]

PAD = 0  # the padding token id
_CLOSED = -1e9  # a gate pre-activation whose sigmoid is exactly 0 in float32


class TokenSteps:
    """Which steps of the token rows ``tokens`` [N, S] (int64) an LSTM reads: each row up to its
    last non-PAD token (at least one step), as PyTorch's packed sequences with those lengths; the
    steps after it are padding, and the LSTM keeps its state through them, so one row gives one
    answer at every pad width and batch mix. Node names start with ``prefix``.

    ``valid`` [S, N, 1] float is 1 for a read step, 0 for padding (the unrolled build's mask);
    ``last`` [1, N, H] int64 is the index of each row's last read step (where the ``LSTM``-node
    build takes its final ``h`` from ``Y``)."""

    def __init__(self, b: GraphBuilder, hidden: int, tokens: str, prefix: str):
        p = prefix
        one = b.constant(f"{p}.one", np.array(1, np.int64))
        is_token = b.node("Not", [b.node("Equal", [tokens, b.constant(f"{p}.pad", np.array(PAD, np.int64))],
                                         [f"{p}.is_pad"], name=f"{p}.is_pad")], [f"{p}.is_token"], name=f"{p}.is_token")
        width = b.node("Gather", [b.node("Shape", [tokens], [f"{p}.shape"], name=f"{p}.shape"),
                                  b.constant(f"{p}.axis1", np.array(1, np.int64))], [f"{p}.S"], name=f"{p}.S", axis=0)
        zero = b.constant(f"{p}.zero", np.array(0, np.int64))
        ramp = b.node("Range", [zero, width, one], [f"{p}.ramp"], name=f"{p}.ramp")  # 0 .. S-1
        position = b.node("Add", [ramp, one], [f"{p}.position"], name=f"{p}.position")  # 1 .. S
        token_pos = b.node("Mul", [b.node("Cast", [is_token], [f"{p}.is_token_i"], name=f"{p}.is_token_i",
                                          to=onnx.TensorProto.INT64), position], [f"{p}.token_pos"], name=f"{p}.token_pos")
        length = b.node("Max", [b.node("ReduceMax", [token_pos], [f"{p}.last_token"], name=f"{p}.last_token", axes=[1],
                                       keepdims=0), one], [f"{p}.length"], name=f"{p}.length")  # [N], >= 1
        read = b.node("Less", [b.node("Unsqueeze", [ramp, one], [f"{p}.ramp_col"], name=f"{p}.ramp_col"), length],
                      [f"{p}.read"], name=f"{p}.read")  # [S, N]
        read_f = b.node("Cast", [read], [f"{p}.read_f"], name=f"{p}.read_f", to=onnx.TensorProto.FLOAT)
        axis2 = b.constant(f"{p}.axis2", np.array([2], np.int64))
        self.valid = b.node("Unsqueeze", [read_f, axis2], [f"{p}.valid"], name=f"{p}.valid")  # [S, N, 1]
        # bool: each LSTM node casts its own copy (a float tensor shared by several Concats makes
        # ONNX Runtime 1.19's gradient builder define its gradient twice)
        self.padding = b.node("Not", [b.node("Unsqueeze", [read, axis2], [f"{p}.read3"], name=f"{p}.read3")],
                              [f"{p}.padding"], name=f"{p}.padding")  # [S, N, 1]
        last = b.node("Sub", [length, one], [f"{p}.last"], name=f"{p}.last")
        last = b.node("Reshape", [last, b.constant(f"{p}.last_shape", np.array([1, -1, 1], np.int64))],
                      [f"{p}.last_col"], name=f"{p}.last_col")
        self.last = b.node("Expand", [last, b.constant(f"{p}.h_shape", np.array([1, 1, hidden], np.int64))],
                           [f"{p}.last_index"], name=f"{p}.last_index")  # [1, N, H]


def skip_padding(b: GraphBuilder, p: str, x: str, width: int, w: str, hidden: int,
                 padding: str) -> tuple[str, str]:
    """An ``LSTM`` node's input and weights extended so that it keeps its cell state through
    padding: one more input feature (1 at padding) whose fixed weights drive the input gate to 0
    and the forget gate to 1 (``sigmoid(-/+1e9)``, exactly 0 and 1 in float32), so at those steps
    ``c_t = 1 * c_{t-1} + 0 * g`` exactly. Trainable: the weights pass through ``Concat``; the
    feature is added as ``Pad(x) + padding * e`` (a ``Concat`` of ``x`` and the feature makes ONNX
    Runtime 1.19's gradient builder define the feature's gradient twice in a stacked encoder).
    ``padding`` is bool [S, N, 1], true at padding (``TokenSteps.padding``, or it reversed in time)."""
    column = np.zeros((1, 4 * hidden, 1), np.float32)
    column[0, :hidden] = _CLOSED                    # input gate (ONNX order i, o, f, c)
    column[0, 2 * hidden:3 * hidden] = -_CLOSED     # forget gate
    padding = b.node("Cast", [padding], [f"{p}.padding"], name=f"{p}.padding", to=onnx.TensorProto.FLOAT)
    unit = np.zeros(width + 1, np.float32)
    unit[-1] = 1.0
    feature = b.node("Mul", [padding, b.constant(f"{p}.padding_unit", unit)], [f"{p}.padding_feature"],
                     name=f"{p}.padding_feature")  # [S, N, width + 1]: 0 .. 0, padding
    widened = b.node("Pad", [x, b.constant(f"{p}.widen", np.array([0, 0, 0, 0, 0, 1], np.int64))], [f"{p}.x_wide"],
                     name=f"{p}.x_wide", mode="constant")
    x = b.node("Add", [widened, feature], [f"{p}.x_padding"], name=f"{p}.x_padding")
    w = b.node("Concat", [w, b.constant(f"{p}.padding_weights", column)], [f"{p}.W_padding"], name=f"{p}.W_padding",
               axis=2)
    return x, w
