"""One real training step on the onnx backend (the Trainer, SGD, the mse loss, batch norm in
training mode) for the zoo's exports that train: the step's update, divided by the rate, equals
PyTorch's gradient of the same loss on the same weights (batch norm on batch statistics)."""

from __future__ import annotations

import copy
import functools

import numpy as np
import onnx
import pytest
import torch
import torch.nn as nn

from _zoo_check import TOL, FirstOutput, export
from _zoo_models import MODELS
from test_zoo_torch import TRAINS

pytestmark = pytest.mark.torch
LR = 100.0  # one step; large so (p0 - p1) / LR keeps float32's precision of the gradient
FAST = {("lstm_text", "torchscript"), ("unet", "torchscript")}
DYNAMO = {"resnet", "gpt2", "gru_text", "mobilenet_v3", "wav2vec2"}  # also stepped as the dynamo exporter writes them


@functools.lru_cache(maxsize=None)
def _built(name):
    return MODELS[name]()


def _torch_grads(module, inputs, target, dtype):
    m = copy.deepcopy(FirstOutput(module, inputs)).to(dtype)
    for sub in m.modules():  # as the onnx backend trains: batch statistics, no dropout (eval export has none)
        if isinstance(sub, nn.modules.batchnorm._BatchNorm):
            sub.train()
    args = [torch.from_numpy(v).to(dtype) if v.dtype.kind == "f" else torch.from_numpy(v) for v in inputs.values()]
    y = m(*args)
    loss = ((y - torch.from_numpy(target).to(dtype)) ** 2).sum() / (2 * len(target))
    loss.backward()
    return {n: p.grad.double().numpy() for n, p in m.named_parameters() if p.grad is not None}



def _cases():
    out = []
    for model, exporter in sorted(TRAINS):
        if model in ("t5", "bart"):  # two inputs: the Trainer's (x, y) pairs take one
            continue
        if exporter not in ("torchscript", "dynamo-noopt") or (exporter == "dynamo-noopt" and model not in DYNAMO):
            continue  # the gradients of every case are compared in test_zoo_torch; here one step per architecture
        marks = [] if (model, exporter) in FAST else [pytest.mark.slow]
        out.append(pytest.param(model, exporter, id=f"{model}-{exporter}", marks=marks))
    return out


@pytest.mark.parametrize("name, exporter", _cases())
def test_one_sgd_step_on_the_onnx_backend_matches_pytorch(tmp_path, name, exporter):
    from onnxforge.runtime import Trainer

    module, inputs = _built(name)
    (x,) = inputs.values()
    rng = np.random.default_rng(4)  # a batch of 8: batch norm's statistics over 2 examples are ill-conditioned
    x = (rng.standard_normal((8, *x.shape[1:])).astype(x.dtype) if x.dtype.kind == "f"
         else rng.integers(0, int(x.max()) + 1, (8, *x.shape[1:])).astype(x.dtype))
    inputs = {next(iter(inputs)): x}
    model = export(module, inputs, exporter)  # the dynamo exporter fixes the example's batch
    path = tmp_path / "model.onnx"
    onnx.save(model, path)
    with torch.no_grad():
        y0 = FirstOutput(module, inputs)(torch.from_numpy(x)).numpy()
    target = (y0 + np.random.default_rng(3).standard_normal(y0.shape)).astype(np.float32)
    t = Trainer(str(path), tmp_path / "run", backend="onnx", optimizer="sgd", lr=LR, weight_decay=0.0, loss="mse",
                device="cpu", progress=False, threads=1)
    before = {k: v.copy() for k, v in t.parameters().items()}
    t.fit((x, target), epochs=1, batch_size=len(x), shuffle=False, overwrite=True)
    after = t.parameters()
    g32 = _torch_grads(module, inputs, target, torch.float32)
    g64 = _torch_grads(module, inputs, target, torch.float64)
    floor = 1e-3 * max(float(np.max(np.abs(g))) for g in g32.values())
    checked = 0
    for n in after:
        if n not in g32 or n.endswith(("running_mean", "running_var")):
            continue
        g = (before[n].astype(np.float64) - after[n].astype(np.float64)) / LR
        rel = float(np.max(np.abs(g - g32[n]))) / max(float(np.max(np.abs(g32[n]))), floor)
        e64, t64 = float(np.max(np.abs(g - g64[n]))), float(np.max(np.abs(g32[n] - g64[n])))
        # the update's own float32 rounding: |p| * 2^-24 / LR
        slack = float(np.max(np.abs(before[n]))) * 2.0 ** -23 / LR
        assert rel <= TOL or e64 <= t64 + slack, f"{n}: {rel:.3g} from PyTorch's gradient after one onnx-backend step"
        checked += 1
    # every PyTorch parameter the export kept under its name (an LSTM/GRU's are re-laid out by dynamo)
    kept = [n for n in g32 if n in after and not n.endswith(("running_mean", "running_var"))]
    assert checked == len(kept) and checked >= 3, f"{checked} of {len(g32)} parameters checked"
