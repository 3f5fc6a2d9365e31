"""The GRU rule against PyTorch autograd (a step loop in ONNX's gate order z, r, h, both
linear_before_reset forms) and, for linear_before_reset=1 (PyTorch's own form), torch.gru."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

from _autodiff_check import assert_close, gradients, single_op_model
from _autodiff_torch import check_op

pytestmark = pytest.mark.torch
R = np.random.default_rng(4)


def f32(*shape):
    return R.uniform(-0.8, 0.8, shape).astype(np.float32)


def gru_ref(direction, H, has_b, has_h0, lbr, which):
    def f(x, w, r, *rest):
        rest = list(rest)
        b = rest.pop(0) if has_b else None
        h0 = rest.pop(0) if has_h0 else None
        T, N, _ = x.shape
        dirs = [False] if direction == "forward" else [True] if direction == "reverse" else [False, True]
        ys, hs = [], []
        for d, rev in enumerate(dirs):
            h = h0[d] if h0 is not None else torch.zeros(N, H, dtype=x.dtype)
            wb = b[d, :3 * H] if b is not None else torch.zeros(3 * H, dtype=x.dtype)
            rb = b[d, 3 * H:] if b is not None else torch.zeros(3 * H, dtype=x.dtype)
            out = [None] * T
            for t in (range(T - 1, -1, -1) if rev else range(T)):
                xw = x[t] @ w[d].T + wb
                z = (xw[:, :H] + h @ r[d, :H].T + rb[:H]).sigmoid()
                rg = (xw[:, H:2 * H] + h @ r[d, H:2 * H].T + rb[H:2 * H]).sigmoid()
                if lbr:
                    hh = (xw[:, 2 * H:] + rg * (h @ r[d, 2 * H:].T + rb[2 * H:])).tanh()
                else:
                    hh = (xw[:, 2 * H:] + (rg * h) @ r[d, 2 * H:].T + rb[2 * H:]).tanh()
                h = (1 - z) * hh + z * h
                out[t] = h
            ys.append(torch.stack(out))
            hs.append(h)
        return [torch.stack(ys, 1), torch.stack(hs)][which]
    return f


CASES = []
for direction in ("forward", "reverse", "bidirectional"):
    for has_b, has_h0 in ((True, False), (True, True), (False, True)):
        for lbr in (0, 1):
            for which in (0, 1):
                CASES.append(pytest.param(direction, has_b, has_h0, lbr, which,
                                          id=f"{direction}-b{int(has_b)}-h{int(has_h0)}-lbr{lbr}-out{which}"))


@pytest.mark.parametrize("direction,has_b,has_h0,lbr,which", CASES)
def test_gru_matches_torch(direction, has_b, has_h0, lbr, which):
    T, N, In, H = 4, 3, 5, 2
    D = 2 if direction == "bidirectional" else 1
    ins = {"X": f32(T, N, In), "W": f32(D, 3 * H, In), "R": f32(D, 3 * H, H)}
    if has_b or has_h0:
        ins["B" if has_b else " "] = f32(D, 6 * H) if has_b else None
    if has_h0:
        ins["  "] = None  # sequence_lens
        ins["h0"] = f32(D, N, H)
    fn = gru_ref(direction, H, has_b, has_h0, lbr, which)
    check_op("GRU", ins, fn, n_out=2, out_index=which, dynamic="batch",
             attrs=dict(hidden_size=H, direction=direction, linear_before_reset=lbr))


def test_gru_with_only_y_h_declared_matches_torch_gru():
    """The node declares only Y_h (the rule declares Y for itself); torch.gru is the twin."""
    T, N, In, H = 5, 2, 3, 4
    x, w, r, b = f32(T, N, In), f32(1, 3 * H, In), f32(1, 3 * H, H), f32(1, 6 * H)
    m = single_op_model("GRU", {"X": x, "W": w, "R": r, "B": b}, 2, hidden_size=H, linear_before_reset=1)
    m.graph.node[0].output[0] = ""
    del m.graph.output[0]
    onnx.checker.check_model(m, full_check=True)
    got, out, _ = gradients(m, ["X", "W", "R", "B"], "y1", {"X": x, "W": w, "R": r, "B": b})
    # torch gates (r, z, n) are ONNX's (z, r, h) reordered
    perm = lambda t: torch.cat([t[H:2 * H], t[:H], t[2 * H:]])  # noqa: E731
    t = {k: torch.tensor(v.astype(np.float64), requires_grad=True) for k, v in dict(X=x, W=w, R=r, B=b).items()}
    params = [perm(t["W"][0]), perm(t["R"][0]), perm(t["B"][0, :3 * H]), perm(t["B"][0, 3 * H:])]
    _, hn = torch.gru(t["X"], torch.zeros(1, N, H, dtype=torch.float64), params, True, 1, 0.0, False, False, False)
    hn.sum().backward()
    assert_close(out["y1"], hn.detach().numpy(), what="gru Y_h")
    for k in t:
        assert_close(got[k], t[k].grad.numpy(), what=f"gru d{k}")
