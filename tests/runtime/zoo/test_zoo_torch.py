"""The zoo: real architectures (torchvision, Hugging Face transformers, torch-written) from tiny
configs with random weights, exported by torch.onnx.export's dynamo exporter with and without its
optimizer and by the TorchScript exporter. Each must either

- train: every parameter's gradient within 1e-4 of PyTorch's (relative to the tensor's largest
  gradient) or no further from PyTorch's float64 gradient than PyTorch's float32 one is, or
- be refused up front by onnxforge naming node and op, or
- be reported as a folded export (batch norm folded into the convolution by the exporter), exactly
  when the export changed or dropped PyTorch's parameters.

Today every export PyTorch can make trains (TRAINS) except the folded ones: a refusal is a regression.
(While rules were missing, refused cases were allowed and the findings went to the rule owners.)"""

from __future__ import annotations

import functools

import pytest
import torch  # noqa: F401 - the zoo builds PyTorch models; Pythons without torch do not collect this file (tests/conftest.py)

from _zoo_check import EXPORTERS, TOL, compare
from _zoo_models import MODELS

pytestmark = pytest.mark.torch

# dynamo's optimizer folds batch norm into the convolutions of these (eval mode)
FOLDED = {("resnet", "dynamo"), ("efficientnet", "dynamo"), ("unet", "dynamo"), ("mobilenet_v3", "dynamo")}
# torch 2.13 / transformers 5.25 cannot export these at all
EXPORT_FAILS = {("gpt2", "torchscript"), ("gpt2", "torchscript-dynamic"), ("t5", "dynamo"), ("t5", "dynamo-noopt")}
# also checked by `onnxforge gradcheck`'s engine against float64 central differences
GRADCHECKED = {("bert", "torchscript"), ("vit", "dynamo"), ("lstm_text", "dynamo"), ("wav2vec2", "dynamo-noopt"),
               ("gpt2", "dynamo-noopt")}
# the fast part (CI's quick feedback); the rest is marked slow
FAST = {("lstm_text", "torchscript"), ("gru_text", "torchscript"), ("bert", "torchscript"),
        ("einsum_cumsum_topk", "torchscript"), ("whisper_encoder", "torchscript"), ("unet", "dynamo")}


@functools.lru_cache(maxsize=None)
def _built(name):
    return MODELS[name]()


def _case(model, exporter):
    marks = [] if (model, exporter) in FAST else [pytest.mark.slow]
    return pytest.param(model, exporter, id=f"{model}-{exporter}", marks=marks)


# every dim symbolic (strided convolutions, run-time Resize sizes and sequence lengths from Shape)
DYNAMIC = ("resnet", "mobilenet_v3", "efficientnet", "unet", "bert", "gpt2", "lstm_text")
PAIRS = [(m, e) for m in MODELS for e in EXPORTERS] + [(m, "torchscript-dynamic") for m in DYNAMIC]
CASES = [_case(m, e) for m, e in PAIRS]
# every export PyTorch makes and does not fold trains with PyTorch's gradients on main (since i23a's and
# i23b's rules landed; ZOO_FINDINGS.md's cases are all fixed): refusing one of them is a regression
TRAINS = set(PAIRS) - FOLDED - EXPORT_FAILS
RESULTS: dict = {}


@pytest.mark.parametrize("name, exporter", CASES)
def test_zoo_model_trains_or_is_refused(name, exporter):
    module, inputs = _built(name)
    r = compare(name, module, inputs, exporter)
    RESULTS[(name, exporter)] = r
    if (name, exporter) in EXPORT_FAILS:
        assert r.status == "export-failed", "PyTorch exports this now: add it to the zoo's expectations"
        return
    assert r.status != "export-failed", r.detail
    if r.status == "folded":
        assert r.changed, f"onnxforge says folded, but the export kept every PyTorch parameter: {r.detail}"
        assert "Fix:" in r.detail and "--for-training" in r.detail
        if name == "unet":  # what it trains (the folded form) still gets exact gradients: gradcheck says so
            from onnxforge.runtime.training.gradcheck import gradcheck

            report = gradcheck(r.onnx, inputs, samples=3)
            assert report.passed and len(report.parameters) == 10, report.to_dict()
    else:
        assert not r.changed, f"the export changed {r.changed[:4]} and onnxforge did not say so"
    assert ((name, exporter) in FOLDED) == (r.status == "folded"), r.detail
    if (name, exporter) in TRAINS:
        assert r.status == "ok", f"{name} exported by {exporter} trained before: {r.status} {r.detail}"
    if r.status == "ok":
        assert r.forward_error <= TOL
        for param, (rel, e64, t64) in r.errors.items():
            assert rel <= TOL or e64 <= t64, f"{param}: {rel:.3g} from PyTorch's float32 gradient"
    if (name, exporter) in GRADCHECKED:  # float64 central differences agree too (opset-20 Gelu, LSTM, Erf)
        from onnxforge.runtime.training.gradcheck import gradcheck

        report = gradcheck(r.onnx, inputs, samples=2)
        assert report.passed, [(p.name, p.max_rel_error) for p in report.parameters if not p.ok]
