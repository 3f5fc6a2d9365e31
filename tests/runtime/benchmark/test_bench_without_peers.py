"""``onnxforge bench`` never ends in a traceback: the LSTM family, whose ``auto`` backend is the onnx
one, still gets its raw ONNX Runtime row (on artifacts built for it), and without PyTorch (CPython
3.13's leg) or onnxruntime-training the rows onnxforge and ONNX Runtime can run are run, with notes
naming the missing peers and how to add them. Tiny sizes: the structure, never the speed."""

from __future__ import annotations

import json
import math

import pytest

from onnxforge.runtime.benchmark import backend_rows, measure, peers
from onnxforge.runtime.benchmark import suite as benchmark
from onnxforge.runtime.benchmark.workloads import TORCH_MISSING, optional_torch

TINY = {"scale": 0.01, "rounds": 1, "calls": 5, "inf_rounds": 1, "mem_steps": 1, "backend_seconds": 0.02}


def _tiny(monkeypatch, rows):
    monkeypatch.setattr(benchmark, "_sizes", lambda quick: dict(TINY))
    monkeypatch.setattr(benchmark, "BACKEND_ROWS", rows)


def _no_torch(monkeypatch):
    import onnxforge.runtime.benchmark.workloads as workloads

    for module in (benchmark, measure, backend_rows, workloads):
        monkeypatch.setattr(module, "optional_torch", lambda: None)


def _positive(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


@pytest.mark.slow
def test_the_lstm_family_runs_its_raw_ort_row_on_artifacts_built_for_it(cli_run, tmp_path, monkeypatch):
    _tiny(monkeypatch, (("lstm", "lstm", "adamw"),))
    res = cli_run("bench", "--quick", "--family", "lstm", "--threads", "1", "--quiet", "--no-cuda",
                  "-o", tmp_path / "b.json")
    assert res.exit_code == 0, res.output
    result = json.loads((tmp_path / "b.json").read_text())
    assert {r["workload"] for r in result["training"]} >= {"lstm T20 in16 h64 LSTM op"}
    raw = peers.raw_ort_missing()
    for row in result["training"]:
        assert _positive(row["onnxforge"]["steps_per_s"])
        assert (raw is None) == ("ort" in row) and (raw is None) == (row["ratio_vs_ort"] is not None)
    assert "lstm T20 in16 h64 LSTM op b64" in res.output


def test_without_pytorch_the_onnxforge_and_onnx_runtime_rows_run(cli_run, tmp_path, monkeypatch):
    _no_torch(monkeypatch)
    _tiny(monkeypatch, (("convnet", "convnet", "sgd"),))
    res = cli_run("bench", "--quick", "--family", "convnet", "--threads", "1", "--quiet", "--no-cuda",
                  "-o", tmp_path / "b.json")
    assert res.exit_code == 0, res.output
    result = json.loads((tmp_path / "b.json").read_text())
    assert result["versions"]["torch"] is None
    assert f"note: PyTorch columns are empty: {TORCH_MISSING}" in res.output
    assert "PyTorch not installed" in res.output and "pip install 'onnxforge[torch]'" in res.output
    for row in result["training"] + result["defaults"]:
        assert "torch" not in row and row["ratio_vs_torch"] is None and _positive(row["onnxforge"]["steps_per_s"])
    for row in result["inference"]:
        assert "torch" not in row and _positive(row["ort"]["latency_us_median"])
        assert _positive(row["latency_ratio_vs_ort"])
    (row,) = result["backends"]
    assert "torch" not in row["steps_per_s"] and _positive(row["steps_per_s"]["onnx"])
    assert f"training backends' rows: torch skipped ({TORCH_MISSING})" in res.output
    if peers.raw_ort_missing() is not None:  # CPython 3.13: the maintained onnxruntime, no training API
        assert "raw ORT training columns are empty" in res.output and "onnxforge[cpu]" in res.output
        assert all("ort" not in r for r in result["training"])


def test_optional_torch_is_none_exactly_when_torch_is_missing():
    import importlib.util

    assert (optional_torch() is None) == (importlib.util.find_spec("torch") is None)
