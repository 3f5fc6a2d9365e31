"""``onnxforge bench --models NAME --json``: only the models' section runs, its rows come out as JSON
on stdout (and in -o's file) with the rates and the ratios computed from them; the table names the
row and its ratio. A tiny written ResNet stands in for the real ones (short rounds, no compile)."""

from __future__ import annotations

import json

import pytest

from onnxforge.runtime.benchmark.zoo import models

pytestmark = pytest.mark.torch

TINY = models.ZooModel("tiny", "ResNet(BasicBlock, 1-1-1-1) at width 4", 4, (3, 16, 16), "torch")


def _no_torchvision(tv):
    raise RuntimeError("the test's tiny model is the written one")


@pytest.fixture
def tiny(monkeypatch):
    from onnxforge.runtime.benchmark import suite

    monkeypatch.setitem(models.MODELS, "tiny", TINY)
    monkeypatch.setitem(models.CONVNETS, "tiny", (TINY, _no_torchvision,
                                                  lambda c: c.ResNet(c.BasicBlock, (1, 1, 1, 1), 10, widths=(4, 4, 4, 4))))
    monkeypatch.setattr(suite, "_sizes", lambda quick: {"rounds": 2, "backend_seconds": 0.03})


@pytest.mark.slow  # torch.onnx.export and the onnx step built twice: 10-40 s on the shared machine
def test_bench_models_json_and_table(cli_run, tiny, tmp_path):
    res = cli_run("bench", "--models", "tiny", "--threads", "1", "--quick", "--quiet", "--json", "-o", tmp_path / "b.json")
    assert res.exit_code == 0, res.output
    result = json.loads(res.output)
    assert result == json.loads((tmp_path / "b.json").read_text())
    assert result["training"] == [] and result["backends"] == [] and result["inference"] == []
    (row,) = result["models"]
    assert (row["model"], row["threads"], row["batch"], row["input"], row["error"]) == ("tiny", 1, 4, [3, 16, 16], None)
    rates = row["steps_per_s"]
    assert set(rates) == {"onnx", "torch"} and min(rates.values()) > 0
    assert row["onnx_ratio"]["torch"] == pytest.approx(rates["onnx"] / rates["torch"])
    table = cli_run("bench", "--models", "tiny", "--threads", "1", "--quick", "--quiet").output
    assert "real architectures, exported by torch.onnx.export" in table and "tiny" in table
    assert "torch.compile skipped: left out with --quick" in table
