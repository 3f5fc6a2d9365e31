"""The LSTM rule against PyTorch autograd (a step loop in ONNX's gate order i, o, f, c)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from _autodiff_torch import check_op

pytestmark = pytest.mark.torch
R = np.random.default_rng(2)


def f32(*shape):
    return R.uniform(-0.8, 0.8, shape).astype(np.float32)


def lstm_ref(direction, H, has_b, has_h0, has_c0, which):
    def f(x, w, r, *rest):
        rest = list(rest)
        b = rest.pop(0) if has_b else None
        h0 = rest.pop(0) if has_h0 else None
        c0 = rest.pop(0) if has_c0 else None
        T, N, _ = x.shape
        dirs = [False] if direction == "forward" else [True] if direction == "reverse" else [False, True]
        ys, hs, cs = [], [], []
        for d, rev in enumerate(dirs):
            h = h0[d] if h0 is not None else torch.zeros(N, H, dtype=x.dtype)
            c = c0[d] if c0 is not None else torch.zeros(N, H, dtype=x.dtype)
            out = [None] * T
            for t in (range(T - 1, -1, -1) if rev else range(T)):
                a = x[t] @ w[d].T + h @ r[d].T
                if b is not None:
                    a = a + b[d, :4 * H] + b[d, 4 * H:]
                i, o, fg, g = a[:, :H].sigmoid(), a[:, H:2 * H].sigmoid(), a[:, 2 * H:3 * H].sigmoid(), a[:, 3 * H:].tanh()
                c = fg * c + i * g
                h = o * c.tanh()
                out[t] = h
            ys.append(torch.stack(out))
            hs.append(h)
            cs.append(c)
        return [torch.stack(ys, 1), torch.stack(hs), torch.stack(cs)][which]
    return f


CASES = []
for direction in ("forward", "reverse", "bidirectional"):
    for has_b, has_h0, has_c0 in ((True, False, False), (True, True, True), (False, True, False)):
        for which in (0, 1, 2):
            CASES.append(pytest.param(direction, has_b, has_h0, has_c0, which,
                                      id=f"{direction}-b{int(has_b)}-h{int(has_h0)}-c{int(has_c0)}-out{which}"))


@pytest.mark.parametrize("direction,has_b,has_h0,has_c0,which", CASES)
def test_lstm_matches_torch(direction, has_b, has_h0, has_c0, which):
    T, N, In, H = 4, 3, 5, 2
    D = 2 if direction == "bidirectional" else 1
    ins = {"X": f32(T, N, In), "W": f32(D, 4 * H, In), "R": f32(D, 4 * H, H)}
    ins["B"] = f32(D, 8 * H) if has_b else None
    ins["seq"] = None
    ins["h0"] = f32(D, N, H) if has_h0 else None
    ins["c0"] = f32(D, N, H) if has_c0 else None
    order = list(ins)
    while ins[order[-1]] is None:
        order.pop()
    fn = lstm_ref(direction, H, has_b, has_h0, has_c0, which)
    check_op("LSTM", _ordered(order, ins), fn, n_out=3, out_index=which,
             attrs=dict(hidden_size=H, direction=direction), dynamic="batch")


def _ordered(order, ins):
    """Inputs in node order; absent optional ones as "" placeholders (kept once: dict keys)."""
    out = {}
    blanks = 0
    for k in order:
        if ins[k] is None:
            blanks += 1
            out[" " * blanks] = None
        else:
            out[k] = ins[k]
    return out
