"""Export a zoo model three ways and compare onnxforge's parameter gradients with PyTorch's.

The exporters: ``dynamo`` (``torch.onnx.export``'s default, with its optimizer), ``dynamo-noopt``
(``optimize=False``) and ``torchscript`` (``dynamo=False``, a dynamic batch); ``torchscript-dynamic``
makes every dim symbolic (spatial sizes, sequence lengths). The gradient of ``sum(dY * y)`` for a
seeded random ``dY`` on the first output, w.r.t. every float parameter that kept its name, is built
by onnxforge (:func:`gradient_model`), run by ONNX Runtime, and compared with PyTorch's autograd on
the same weights: within ``TOL`` of the tensor's largest gradient, or no further from PyTorch's
float64 gradient than PyTorch's own float32 one is."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np
import onnxruntime as ort
import torch
import torch.nn as nn

from onnxforge.runtime.benchmark.zoo.export import export
from onnxforge.runtime.benchmark.zoo.export import first_output as FirstOutput

EXPORTERS = ("dynamo", "dynamo-noopt", "torchscript")
TOL = 1e-4


@dataclass
class Result:
    model: str
    exporter: str
    status: str = "?"  # "ok", "refused", "wrong", "failed", "export-failed"
    detail: str = ""
    errors: dict = field(default_factory=dict)  # parameter -> (rel error vs fp32, |onnx-f64|, |torch32-f64|)
    missing: list = field(default_factory=list)  # torch parameters not among the initialisers
    changed: list = field(default_factory=list)  # torch parameters the export folded (dropped or changed)
    forward_error: float = 0.0
    onnx: object = None

    @property
    def worst(self) -> float:
        return max((e[0] for e in self.errors.values()), default=0.0)


def torch_grads(module, inputs, dy, dtype):
    m = copy.deepcopy(FirstOutput(module, inputs)).to(dtype)
    args = [torch.from_numpy(v).to(dtype) if v.dtype.kind == "f" else torch.from_numpy(v) for v in inputs.values()]
    y = m(*args)
    y.backward(torch.from_numpy(dy).to(dtype))
    return {n: p.grad.detach().double().numpy() if p.grad is not None else np.zeros(p.shape)
            for n, p in m.named_parameters()}, y.detach().double().numpy()


def run_ort(model, feeds):
    so = ort.SessionOptions()
    so.log_severity_level = 4
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feeds)))


def _changed(model, named) -> list:
    """Torch parameters the export changed: a batch norm's tensors gone, or a tensor kept under
    its name with other values (a convolution's weight with the batch norm folded in)."""
    from onnx import numpy_helper

    inits = {t.name: t for t in model.graph.initializer}
    changed = []
    for n, p in named.items():
        if n in inits:
            if tuple(inits[n].dims) != tuple(p.shape) or not np.allclose(numpy_helper.to_array(inits[n]),
                                                                          p.detach().numpy(), atol=1e-6):
                changed.append(n)
        else:
            changed.append(n)
    return changed


def compare(name, module, inputs, exporter, model=None) -> Result:
    """Export (unless ``model`` is given), then: folded -> ``folded``; refused up front by
    onnxforge -> ``refused``; else the gradients against PyTorch's -> ``ok`` or ``wrong`` (or
    ``failed`` when building or running them fails after onnxforge accepted the model)."""
    from onnxforge.runtime.autodiff import AutodiffError, describe_missing, gradient_model, missing_rules
    from onnxforge.runtime.convert.folded import folded_line

    res = Result(name, exporter)
    if model is None:
        try:
            model = export(module, inputs, exporter)
        except Exception as exc:  # noqa: BLE001
            res.status, res.detail = "export-failed", f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
            return res
    res.onnx = model
    wrapper = FirstOutput(module, inputs)
    named = {n: p for n, p in wrapper.named_parameters() if p.requires_grad}
    batchnorms = {f"{m}." for m, mod in wrapper.named_modules() if isinstance(mod, nn.modules.batchnorm._BatchNorm)}
    inits = {t.name for t in model.graph.initializer}
    res.missing = [n for n in named if n not in inits]
    res.changed = [n for n in _changed(model, named)
                   if n in inits or any(n.startswith(b) for b in batchnorms)]
    line = folded_line(model)
    if line:
        res.status, res.detail = "folded", line
        return res
    params = [n for n in named if n in inits and n not in res.changed]
    out = model.graph.output[0].name
    try:
        blockers = missing_rules(model, params, out, reasons=True)
    except AutodiffError as exc:
        res.status, res.detail = "refused", str(exc)[:300]
        return res
    if blockers:
        res.status, res.detail = "refused", describe_missing(blockers)[:300]
        return res
    with torch.no_grad():
        y_torch = wrapper(*[torch.from_numpy(v) for v in inputs.values()]).numpy()
    dy = np.random.default_rng(7).standard_normal(y_torch.shape).astype(np.float32)
    g32, _ = torch_grads(module, inputs, dy, torch.float32)
    g64, _ = torch_grads(module, inputs, dy, torch.float64)
    try:
        gm = gradient_model(model, params, out, seed="dY")
        got = run_ort(gm, {**inputs, "dY": dy})
    except Exception as exc:  # noqa: BLE001
        res.status, res.detail = "failed", f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"
        return res
    fwd = float(np.max(np.abs(got[out] - y_torch)) / max(1e-12, np.max(np.abs(y_torch))))
    # a tensor whose exact gradient is zero (a key bias under softmax) is judged against a floor:
    # 1e-3 of the model's largest gradient
    floor = 1e-3 * max(float(np.max(np.abs(g))) for g in g32.values() if g.size)
    wrong = []
    for n in params:
        g = got[f"{n}_grad"].astype(np.float64)
        scale = max(float(np.max(np.abs(g32[n]))), floor, 1e-30)
        rel = float(np.max(np.abs(g - g32[n]))) / scale
        e64, t64 = float(np.max(np.abs(g - g64[n]))), float(np.max(np.abs(g32[n] - g64[n])))
        res.errors[n] = (rel, e64, t64)
        if rel > TOL and e64 > t64:
            wrong.append(n)
    res.forward_error = fwd
    if fwd > TOL:
        res.status, res.detail = "wrong", f"forward differs from PyTorch by {fwd:.3g}"
    elif wrong:
        res.status, res.detail = "wrong", f"{len(wrong)} gradients off: " + ", ".join(
            f"{n} ({res.errors[n][0]:.3g})" for n in wrong[:6])
    else:
        res.status = "ok"
    return res
