"""``inspect`` tells the truth: "trainable" on the onnx backend means the training step builds and
a step runs; where it would not, inspect names the node, the op and why. Folded exports are said
in one line with the fix."""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from onnxforge.cli.main import cli
from onnxforge.runtime import Trainer

sys.path.insert(0, str(Path(__file__).parents[1] / "runtime" / "zoo"))
from _zoo_models import TinyUNet, _seeded

pytestmark = pytest.mark.torch


def _export(module, x, path, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (torch.from_numpy(x),), str(path), dynamo=False, input_names=["x"],
                          output_names=["y"], opset_version=17, dynamic_axes={"x": {0: "N"}, "y": {0: "N"}}, **kw)


def _inspect(path) -> dict:
    result = CliRunner().invoke(cli, ["inspect", str(path), "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def _one_step(path, x, y, tmp_path, backend="onnx") -> str | None:
    """None when one epoch of one step trains on ``backend``, else the error."""
    try:
        t = Trainer(str(path), tmp_path / backend, backend=backend, device="cpu", progress=False, threads=1, loss="mse")
        t.fit((x, y), epochs=1, batch_size=len(x), overwrite=True)
    except Exception as exc:  # noqa: BLE001
        return f"{type(exc).__name__}: {exc}"
    return None


@pytest.mark.artifacts
@pytest.mark.parametrize("net", ["unet", "mlp", "layernorm"])
def test_trainable_means_a_step_runs(tmp_path, net):
    """The U-Net's Resize takes sizes computed at run time: inspect must not say trainable unless a
    training step really runs (and, the day a rule covers it, it says yes and the step runs)."""
    if net == "unet":
        module, x = _seeded(TinyUNet()), np.random.default_rng(0).standard_normal((2, 3, 16, 16)).astype(np.float32)
    elif net == "layernorm":  # ORT training 1.19 needs Mean/InvStdDev, which the gradient-forms pass declares
        module = _seeded(torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.LayerNorm(8), torch.nn.Linear(8, 3)))
        x = np.random.default_rng(0).standard_normal((4, 6)).astype(np.float32)
    else:
        module = _seeded(torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3)))
        x = np.random.default_rng(0).standard_normal((4, 6)).astype(np.float32)
    path = tmp_path / f"{net}.onnx"
    _export(module, x, path, do_constant_folding=False)
    with torch.no_grad():
        y = module(torch.from_numpy(x)).numpy() + 0.1
    info = _inspect(path)
    says = info["backends"]["onnx"]["trainable"]
    failed = _one_step(path, x, y, tmp_path)
    assert says == (failed is None), f"inspect says trainable={says}; one step: {failed or 'ran'}"
    if not says:
        reason = info["backends"]["onnx"]["not_trainable_because"]
        assert "'Resize'" in reason and "'/Resize'" in reason, reason
        text = CliRunner().invoke(cli, ["inspect", str(path)]).output
        assert "onnx backend: no (" in text and "Resize" in text
    if net == "mlp":
        assert says
    artifacts = info["backends"]["artifacts"]  # the same truth for the artifacts backend
    failed = _one_step(path, x, y, tmp_path, backend="artifacts")
    assert artifacts["trainable"] == (failed is None), f"{artifacts}; one artifacts step: {failed or 'ran'}"
    if net == "layernorm":  # the one-output form every exporter writes: both backends train it
        assert artifacts["trainable"] and says


class ConvBN(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.bn = torch.nn.BatchNorm2d(4)
        self.fc = torch.nn.Linear(4, 2)

    def forward(self, x):
        return self.fc(torch.relu(self.bn(self.conv(x))).mean((2, 3)))


def test_inspect_and_train_say_a_folded_export_in_one_line(tmp_path):
    x = np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(np.float32)
    module = _seeded(ConvBN())
    _export(module, x, tmp_path / "folded.onnx")  # eval mode, constant folding on: BN folded into the Conv
    _export(module, x, tmp_path / "kept.onnx", do_constant_folding=False)
    info = _inspect(tmp_path / "folded.onnx")
    assert info["folded_line"] and "Conv (/conv/Conv)" in info["folded_line"] and "--for-training" in info["folded_line"]
    assert info["folded"] and _inspect(tmp_path / "kept.onnx")["folded_line"] is None
    text = CliRunner().invoke(cli, ["inspect", str(tmp_path / "folded.onnx")]).output
    assert sum("folded export:" in line for line in text.splitlines()) == 1
    np.savez(tmp_path / "d.npz", x=np.repeat(x, 4, 0), y=np.zeros((8, 2), np.float32))
    result = CliRunner().invoke(cli, ["train", str(tmp_path / "folded.onnx"), "--data", str(tmp_path / "d.npz"),
                                      "--epochs", "1", "--loss", "mse", "--backend", "onnx", "--quiet",
                                      "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    assert sum("folded export:" in line for line in result.output.splitlines()) == 1
    kept = CliRunner().invoke(cli, ["train", str(tmp_path / "kept.onnx"), "--data", str(tmp_path / "d.npz"),
                                    "--epochs", "1", "--loss", "mse", "--backend", "onnx", "--quiet",
                                    "--out", str(tmp_path / "run2")])
    assert kept.exit_code == 0 and "folded" not in kept.output
