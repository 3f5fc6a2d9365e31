"""An LSTM layer unrolled over a fixed number of steps, built from MatMul/Gemm, Split, Sigmoid,
Tanh, Mul, Add and Sub, with the same parameters (``W [1, 4H, in]``, ``R [1, 4H, H]``, ``B [1, 8H]``,
ONNX gate order i, o, f, c) and the same function as one forward ``LSTM`` node.

Why: ONNX Runtime training 1.19's CPU gradient of the ``LSTM`` op is slow (about 0.3x PyTorch's
``nn.LSTM`` training on the benchmark's T=20, hidden 64 model). Unrolled, every gradient is a
plain matrix multiply or elementwise op, and the input projection of all steps is one ``Gemm``
(``[T*N, in] x [in, 4H]``); only the recurrence ``h @ R^T`` stays per step.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from onnxforge.graphs._common import GraphBuilder

__all__ = ["unrolled_lstm", "unrolled_lstm_up_to"]


def unrolled_lstm(b: GraphBuilder, prefix: str, x: str, w: str, r: str, bias: str, hidden: int, steps: int,
                  initial: tuple[str, str] | None = None, *, all_states: bool = False,
                  mask: str | None = None) -> tuple[str, str, str]:
    """``x [steps, N, in]`` (time-major) through the LSTM with parameters ``w``, ``r``, ``bias``.

    ``initial`` is ``(h0, c0)``, each ``[1, N, H]`` (as an ``LSTM`` node's ``initial_h`` and
    ``initial_c``), or ``None`` for zeros. Returns ``(Y [steps, N, H], Y_h [1, N, H], Y_c [1, N, H])``,
    the outputs of an ``LSTM`` node with its ``num_directions`` axis squeezed from ``Y``. With
    ``all_states`` the last two are every step's ``h`` and ``c``, each ``[steps, N, H]``.

    ``mask`` (float ``[steps, N, 1]``, 1 or 0) makes the recurrence skip the steps where it is 0:
    ``h_t = m_t h_new + (1 - m_t) h_prev`` and the same for ``c``, so the state is kept through
    padding (exactly: one of the two terms is a product with 0).
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
    # tanh(x) = 2*sigmoid(2x) - 1: with the g rows of W, R and the bias doubled (once per run), one
    # Sigmoid and one four-way Split serve all four gates of a step (a Split and its gradient, a
    # Concat, are costly per byte; this halves what they copy)
    scale = b.constant(f"{p}.g_scale", np.repeat(np.array([1, 1, 1, 2], np.float32), H))  # [4H]
    w2 = b.node("Mul", [w2, b.constant(f"{p}.g_scale_col", np.repeat(np.array([1, 1, 1, 2], np.float32), H)[:, None])],
                [f"{p}.W2_g2"], name=f"{p}.W2_g2")
    bsum = b.node("Mul", [bsum, scale], [f"{p}.bias_g2"], name=f"{p}.bias_g2")
    rt = b.node("Mul", [rt, scale], [f"{p}.RT_g2"], name=f"{p}.RT_g2")
    two = b.constant(f"{p}.two", np.array(2.0, np.float32))
    one = b.constant(f"{p}.one_f", np.array(1.0, np.float32))
    # the input projection of every step at once, batch-major so that every step's slice is a plain
    # [N, 4H] matrix (2-D MatMuls differentiate without reshapes): [T, N, in] -> [N*T, in] -> [N, T*4H]
    xb = b.node("Transpose", [x], [f"{p}.x_batch_major"], name=f"{p}.batch_major", perm=[1, 0, 2])
    shape = b.node("Shape", [x], [f"{p}.x_shape"], name=f"{p}.x_shape")
    n_in = b.node("Concat", [b.constant(f"{p}.minus1", np.array([-1], np.int64)),
                             b.node("Slice", [shape, b.constant(f"{p}.s2", np.array([2], np.int64)),
                                              b.constant(f"{p}.s3", np.array([3], np.int64))],
                                    [f"{p}.in_dim"], name=f"{p}.in_dim")],
                  [f"{p}.flat_shape"], name=f"{p}.flat_shape", axis=0)
    flat = b.node("Reshape", [xb, n_in], [f"{p}.x_flat"], name=f"{p}.x_flat")
    proj = b.node("Gemm", [flat, w2, bsum], [f"{p}.proj_flat"], name=f"{p}.input_projection", transB=1)
    proj = b.node("Reshape", [proj, b.constant(f"{p}.proj_shape", np.array([-1, steps * 4 * H], np.int64))],
                  [f"{p}.proj"], name=f"{p}.proj")  # [N, T*4H]
    xs = [proj] if steps == 1 else b.node("Split", [proj], [f"{p}.x{t}" for t in range(steps)],
                                          name=f"{p}.split_steps", axis=1)  # each [N, 4H]
    keeps = None
    if mask is not None:  # [steps, N, 1] -> per step [N, 1]: m_t and 1 - m_t
        m_nt = b.node("Transpose", [b.node("Squeeze", [mask, b.constant(f"{p}.axis2", np.array([2], np.int64))],
                                           [f"{p}.mask_tn"], name=f"{p}.mask_tn")], [f"{p}.mask_nt"],
                      name=f"{p}.mask_nt", perm=[1, 0])
        inv = b.node("Sub", [one, m_nt], [f"{p}.keep_nt"], name=f"{p}.keep_nt")
        ms, keeps = ([m_nt], [inv]) if steps == 1 else (
            b.node("Split", [m_nt], [f"{p}.m{t}" for t in range(steps)], name=f"{p}.split_mask", axis=1),
            b.node("Split", [inv], [f"{p}.k{t}" for t in range(steps)], name=f"{p}.split_keep", axis=1))
    h: Any = None  # the state names once a step has run (the first step reads only x without an initial state)
    c: Any = None
    if initial:
        h = b.node("Squeeze", [initial[0], axis0], [f"{p}.h0"], name=f"{p}.h0")  # [N, H]
        c = b.node("Squeeze", [initial[1], axis0], [f"{p}.c0"], name=f"{p}.c0")
    ys, cs = [], []
    for t in range(steps):
        s = f"{p}.t{t}"
        gates = xs[t]
        c_prev = c
        if h is not None:
            rec = b.node("MatMul", [h, rt], [f"{s}.rec"], name=f"{s}.rec")
            gates = b.node("Add", [gates, rec], [f"{s}.gates"], name=f"{s}.gates")
        sig = b.node("Sigmoid", [gates], [f"{s}.sig"], name=f"{s}.sigmoid")
        if c is None:  # the first step from zero state: the forget gate multiplies zero, leave it out
            # (sliced, not split: ONNX Runtime's Split gradient drops an unused output's columns)
            i, o = b.node("Split", [_slice(b, sig, 0, 2 * H, f"{s}.io")], [f"{s}.i", f"{s}.o"], name=f"{s}.split_io", axis=-1)
            sg = _slice(b, sig, 3 * H, 4 * H, f"{s}.sg")
        else:
            i, o, f, sg = b.node("Split", [sig], [f"{s}.i", f"{s}.o", f"{s}.f", f"{s}.sg"], name=f"{s}.split_gates", axis=-1)
        g = b.node("Sub", [b.node("Mul", [sg, two], [f"{s}.sg2"], name=f"{s}.sg2"), one], [f"{s}.g"], name=f"{s}.g")
        write = b.node("Mul", [i, g], [f"{s}.write"], name=f"{s}.write")
        if c is None:
            c = write
        else:
            keep = b.node("Mul", [f, c], [f"{s}.keep"], name=f"{s}.keep")
            c = b.node("Add", [keep, write], [f"{s}.c"], name=f"{s}.c")
        h_new = b.node("Mul", [o, b.node("Tanh", [c], [f"{s}.tanh_c"], name=f"{s}.tanh_c")], [f"{s}.h"], name=f"{s}.h")
        if keeps is not None:
            c = _masked(b, f"{s}.c", ms[t], keeps[t], c, c_prev)
            h_new = _masked(b, f"{s}.h", ms[t], keeps[t], h_new, h)
        h = h_new
        ys.append(h)
        cs.append(c)
    tnh = b.constant(f"{p}.tnh", np.array([steps, -1, H], np.int64))

    def stack(items: list[str], name: str) -> str:  # [N, H] per step -> [T, N, H]
        flat = items[0] if steps == 1 else b.node("Concat", items, [f"{p}.{name}_flat"], name=f"{p}.{name}_concat", axis=0)
        return b.node("Reshape", [flat, tnh], [f"{p}.{name}"], name=f"{p}.{name}")

    y = stack(ys, "Y")
    if all_states:
        return y, y, stack(cs, "C")
    y_h = b.node("Unsqueeze", [h, axis0], [f"{p}.Y_h"], name=f"{p}.Y_h")
    y_c = b.node("Unsqueeze", [c, axis0], [f"{p}.Y_c"], name=f"{p}.Y_c")
    return y, y_h, y_c

def unrolled_lstm_up_to(b: GraphBuilder, prefix: str, x: str, w: str, r: str, bias: str, hidden: int,
                        max_steps: int, initial: tuple[str, str] | None = None,
                        mask: str | None = None) -> tuple[str, str, str]:
    """Like :func:`unrolled_lstm` for ``x [T, N, in]`` of any length ``T <= max_steps``.

    ``x`` is padded with zeros to ``max_steps`` (the LSTM is causal: padding after the last step
    changes no earlier output); ``Y`` is cut back to ``T`` steps and ``Y_h``/``Y_c`` are the states
    after step ``T`` (``Gather``), as the ``LSTM`` node gives them. ``mask`` ([T, N, 1]) is padded
    with zeros alike and passed on (see :func:`unrolled_lstm`)."""
    p = f"{prefix}.unrolled"
    shape = b.node("Shape", [x], [f"{p}.in_shape"], name=f"{p}.in_shape")
    t = b.node("Slice", [shape, b.constant(f"{p}.len_start", np.array([0], np.int64)),
                         b.constant(f"{p}.len_end", np.array([1], np.int64))], [f"{p}.T"], name=f"{p}.T")
    extra = b.node("Sub", [b.constant(f"{p}.max_steps", np.array([max_steps], np.int64)), t], [f"{p}.pad_steps"],
                   name=f"{p}.pad_steps")
    zeros2 = b.constant(f"{p}.zeros2", np.zeros(2, np.int64))
    zeros3 = b.constant(f"{p}.zeros3", np.zeros(3, np.int64))
    pads = b.node("Concat", [zeros3, extra, zeros2], [f"{p}.pads"], name=f"{p}.pads", axis=0)
    padded = b.node("Pad", [x, pads], [f"{p}.x_padded"], name=f"{p}.pad", mode="constant")
    if mask is not None:
        mask = b.node("Pad", [mask, pads], [f"{p}.mask_padded"], name=f"{p}.pad_mask", mode="constant")
    y_all, h_all, c_all = unrolled_lstm(b, prefix, padded, w, r, bias, hidden, max_steps, initial, all_states=True,
                                        mask=mask)
    y = b.node("Slice", [y_all, b.constant(f"{p}.y0", np.array([0], np.int64)), t], [f"{p}.Y_cut"], name=f"{p}.cut")
    last = b.node("Sub", [t, b.constant(f"{p}.one", np.array([1], np.int64))], [f"{p}.last_step"], name=f"{p}.last_step")
    y_h = b.node("Gather", [h_all, last], [f"{p}.last_h"], name=f"{p}.last_h", axis=0)  # [1, N, H]
    y_c = b.node("Gather", [c_all, last], [f"{p}.last_c"], name=f"{p}.last_c", axis=0)
    return y, y_h, y_c


def _masked(b: GraphBuilder, name: str, m: str, keep: str, new: str, prev: str | None) -> str:
    """``m * new + keep * prev`` (``keep = 1 - m``); ``m * new`` from a zero state (``prev`` None)."""
    written = b.node("Mul", [m, new], [f"{name}.masked_new"], name=f"{name}.masked_new")
    if prev is None:
        return written
    kept = b.node("Mul", [keep, prev], [f"{name}.kept"], name=f"{name}.kept")
    return b.node("Add", [written, kept], [f"{name}.masked"], name=f"{name}.masked")


def _slice(b: GraphBuilder, x: str, start: int, end: int, out: str) -> str:
    """``x[..., start:end]`` on the last axis."""
    return b.node("Slice", [x, b.constant(f"{out}.start", np.array([start], np.int64)),
                            b.constant(f"{out}.end", np.array([end], np.int64)),
                            b.constant(f"{out}.axis", np.array([-1], np.int64))], [out], name=out)
