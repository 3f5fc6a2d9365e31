"""The per-op comparison with PyTorch autograd (imported by the torch-marked tests only)."""

from __future__ import annotations

import numpy as np
import onnx
import torch

from _autodiff_check import assert_close, gradients, single_op_model

R = np.random.default_rng(0)


def check_op(op, inputs, fn, consts=(), opset=17, n_out=1, out_index=0, attrs=None, dynamic=False, tol=1e-5, both=True,
             reference_only=False):
    """One ``op`` node over ``inputs``; its vector-Jacobian products for a random dY (ORT and
    onnx.reference) equal PyTorch's for ``fn`` on the same values (computed in float64)."""
    consts = set(consts)
    model = single_op_model(op, inputs, n_out, opset=opset, dynamic=dynamic, const_inputs=dict.fromkeys(consts),
                            **(attrs or {}))
    for init in model.graph.initializer:
        init.CopyFrom(onnx.numpy_helper.from_array(np.asarray(inputs[init.name]), init.name))
    present = {n: v for n, v in inputs.items() if n.strip()}
    wrt = [n for n, v in present.items() if n not in consts and np.asarray(v).dtype.kind == "f"]
    tens = {n: torch.tensor(np.asarray(v, np.float64) if np.asarray(v).dtype.kind == "f" else np.asarray(v),
                            requires_grad=n in wrt) for n, v in present.items()}
    y = fn(*tens.values())
    dy = R.standard_normal(tuple(y.shape)).astype(np.asarray(next(iter(present.values()))).dtype)
    if op == "Cast":
        dy = dy.astype(np.float64)
    y.backward(torch.tensor(dy, dtype=y.dtype))
    feeds = {n: v for n, v in present.items() if n not in consts}
    feeds["dY"] = dy
    got, out, g = gradients(model, wrt, f"y{out_index}", feeds, seed="dY", tol=tol, both=both,
                              reference_only=reference_only)
    assert_close(out[f"y{out_index}"], y.detach().numpy(), tol, what=f"{op} forward")
    for n in wrt:
        assert_close(got[n], tens[n].grad.numpy(), tol, what=f"{op} d{n}")
    return g
