"""An LSTM layer unrolled over a fixed number of steps, built from MatMul/Gemm, Split, Sigmoid,
Tanh, Mul and Add, with the same parameters (``W [1, 4H, in]``, ``R [1, 4H, H]``, ``B [1, 8H]``,
ONNX gate order i, o, f, c) and the same function as one forward ``LSTM`` node.

Why: ONNX Runtime training 1.19's CPU gradient of the ``LSTM`` op is slow (about 0.3x PyTorch's
``nn.LSTM`` training on the benchmark's T=20, hidden 64 model). Unrolled, every gradient is a
plain matrix multiply or elementwise op, and the input projection of all steps is one ``Gemm``
(``[T*N, in] x [in, 4H]``); only the recurrence ``h @ R^T`` stays per step.
"""

from __future__ import annotations

import numpy as np

from onnxforge.graphs._common import GraphBuilder

__all__ = ["unrolled_lstm"]


def unrolled_lstm(b: GraphBuilder, prefix: str, x: str, w: str, r: str, bias: str, hidden: int, steps: int,
                  initial: tuple[str, str] | None = None) -> tuple[str, str, str]:
    """``x [steps, N, in]`` (time-major) through the LSTM with parameters ``w``, ``r``, ``bias``.

    ``initial`` is ``(h0, c0)``, each ``[1, N, H]`` (as an ``LSTM`` node's ``initial_h`` and
    ``initial_c``), or ``None`` for zeros. Returns ``(Y [steps, N, H], Y_h [1, N, H], Y_c [1, N, H])``,
    the outputs of an ``LSTM`` node with its ``num_directions`` axis squeezed from ``Y``.
    """
    H = hidden
    p = f"{prefix}.unrolled"
    axis0 = b.constant(f"{p}.axis0", np.array([0], np.int64))
    w2 = b.node("Squeeze", [w, axis0], [f"{p}.W2"], name=f"{p}.squeeze_W")  # [4H, in]
    rt = b.node("Transpose", [b.node("Squeeze", [r, axis0], [f"{p}.R2"], name=f"{p}.squeeze_R")],
                [f"{p}.RT"], name=f"{p}.transpose_R", perm=[1, 0])  # [H, 4H]
    wb, rb = b.node("Split", [b.node("Squeeze", [bias, axis0], [f"{p}.B1"], name=f"{p}.squeeze_B")],
                    [f"{p}.Wb", f"{p}.Rb"], name=f"{p}.split_B", axis=0)
    bsum = b.node("Add", [wb, rb], [f"{p}.bias"], name=f"{p}.bias")  # [4H]
    # the input projection of every step at once: [T, N, in] -> [T*N, in] -> Gemm -> [T, N, 4H]
    shape = b.node("Shape", [x], [f"{p}.x_shape"], name=f"{p}.x_shape")
    tn_in = b.node("Concat", [b.constant(f"{p}.minus1", np.array([-1], np.int64)),
                              b.node("Slice", [shape, b.constant(f"{p}.s2", np.array([2], np.int64)),
                                               b.constant(f"{p}.s3", np.array([3], np.int64))],
                                     [f"{p}.in_dim"], name=f"{p}.in_dim")],
                   [f"{p}.flat_shape"], name=f"{p}.flat_shape", axis=0)
    flat = b.node("Reshape", [x, tn_in], [f"{p}.x_flat"], name=f"{p}.x_flat")
    proj = b.node("Gemm", [flat, w2, bsum], [f"{p}.proj_flat"], name=f"{p}.input_projection", transB=1)
    tn4h = b.node("Concat", [b.node("Slice", [shape, b.constant(f"{p}.s0", np.array([0], np.int64)),
                                              b.constant(f"{p}.s2b", np.array([2], np.int64))],
                                    [f"{p}.tn"], name=f"{p}.tn"),
                             b.constant(f"{p}.g4", np.array([4 * H], np.int64))],
                   [f"{p}.proj_shape"], name=f"{p}.proj_shape", axis=0)
    proj = b.node("Reshape", [proj, tn4h], [f"{p}.proj"], name=f"{p}.proj")
    xs = [proj] if steps == 1 else b.node("Split", [proj], [f"{p}.x{t}" for t in range(steps)],
                                          name=f"{p}.split_steps", axis=0)  # each [1, N, 4H]
    h, c = initial if initial else (None, None)
    ys = []
    for t in range(steps):
        s = f"{p}.t{t}"
        gates = xs[t]
        if h is not None:
            rec = b.node("MatMul", [h, rt], [f"{s}.rec"], name=f"{s}.rec")
            gates = b.node("Add", [gates, rec], [f"{s}.gates"], name=f"{s}.gates")
        if c is None:  # the first step from zero state: the forget gate multiplies zero, skip it
            io = b.node("Sigmoid", [_slice(b, gates, 0, 2 * H, f"{s}.io_pre")], [f"{s}.io"], name=f"{s}.sigmoid")
            g = b.node("Tanh", [_slice(b, gates, 3 * H, 4 * H, f"{s}.g_pre")], [f"{s}.g"], name=f"{s}.tanh_g")
            i, o = b.node("Split", [io], [f"{s}.i", f"{s}.o"], name=f"{s}.split_io", axis=-1)
            c = b.node("Mul", [i, g], [f"{s}.c"], name=f"{s}.c")
        else:
            # gates i, o, f are contiguous in ONNX order: one Sigmoid over [.., 3H], one Tanh over [.., H]
            iof, g = b.node("Split", [gates, b.constant(f"{s}.sizes", np.array([3 * H, H], np.int64))],
                            [f"{s}.iof_pre", f"{s}.g_pre"], name=f"{s}.split_gates", axis=-1)
            iof = b.node("Sigmoid", [iof], [f"{s}.iof"], name=f"{s}.sigmoid")
            g = b.node("Tanh", [g], [f"{s}.g"], name=f"{s}.tanh_g")
            i, o, f = b.node("Split", [iof], [f"{s}.i", f"{s}.o", f"{s}.f"], name=f"{s}.split_iof", axis=-1)
            keep = b.node("Mul", [f, c], [f"{s}.keep"], name=f"{s}.keep")
            write = b.node("Mul", [i, g], [f"{s}.write"], name=f"{s}.write")
            c = b.node("Add", [keep, write], [f"{s}.c"], name=f"{s}.c")
        h = b.node("Mul", [o, b.node("Tanh", [c], [f"{s}.tanh_c"], name=f"{s}.tanh_c")], [f"{s}.h"], name=f"{s}.h")
        ys.append(h)
    y = ys[0] if steps == 1 else b.node("Concat", ys, [f"{p}.Y"], name=f"{p}.concat_steps", axis=0)
    return y, h, c


def _slice(b: GraphBuilder, x: str, start: int, end: int, out: str) -> str:
    """``x[..., start:end]`` on the last axis."""
    return b.node("Slice", [x, b.constant(f"{out}.start", np.array([start], np.int64)),
                            b.constant(f"{out}.end", np.array([end], np.int64)),
                            b.constant(f"{out}.axis", np.array([-1], np.int64))], [out], name=out)
