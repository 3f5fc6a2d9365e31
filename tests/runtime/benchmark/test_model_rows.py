"""``bench --models``' rows: a real architecture exported by torch.onnx.export, trained on the onnx
backend against PyTorch eager on the same weights; the ratios come from the measured rates; a
contestant or an export that fails is a note in its row and the rest still runs; without PyTorch
every row says so and nothing raises. Tiny models and rounds: the structure, never the speed."""

from __future__ import annotations

import json
import math

import pytest

from onnxforge.runtime.benchmark import model_rows, profile, timing
from onnxforge.runtime.benchmark.report import format_table
from onnxforge.runtime.benchmark.workloads import TORCH_MISSING
from onnxforge.runtime.benchmark.zoo import models
from onnxforge.runtime.errors import ConfigError

TINY = models.ZooModel("tiny", "ResNet(BasicBlock, 1-1-1-1) at width 4", 4, (3, 16, 16), "torch")


def _no_torchvision(tv):
    raise RuntimeError("the test's tiny model is the written one")


@pytest.fixture
def tiny(monkeypatch):
    monkeypatch.setitem(models.MODELS, "tiny", TINY)
    monkeypatch.setitem(models.CONVNETS, "tiny", (TINY, _no_torchvision,
                                                  lambda c: c.ResNet(c.BasicBlock, (1, 1, 1, 1), 10, widths=(4, 4, 4, 4))))
    return "tiny"


def _positive(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


@pytest.mark.torch
@pytest.mark.slow  # exports, builds the step twice (timed and profiled): 10-40 s on the shared 2 cores
def test_a_model_row_times_onnx_and_eager_and_its_ratio_is_theirs(tiny):
    row = model_rows.bench_model(tiny, seconds=0.05, rounds=2, threads=1, compile=False, profile_steps=2)
    assert row["error"] is None, row
    rates = row["steps_per_s"]
    assert set(rates) == {"onnx", "torch"} and all(_positive(v) for v in rates.values())
    assert row["onnx_ratio"] == {"torch": rates["onnx"] / rates["torch"]}
    assert row["source"] == "torch-written torchvision blocks"
    assert any(n.startswith("torch.compile skipped: left out with --quick") for n in row["notes"])
    assert any(n.startswith("JAX skipped") for n in row["notes"])
    prof = row["profile"]
    assert prof["steps"] == 2 and _positive(prof["kernel_ms_per_step"]) and _positive(prof["wall_ms_per_step"])
    ops = {o["op"] for o in prof["by_op"]}
    assert {"Conv", "ConvTranspose"} <= ops or {"Conv"} <= ops
    assert math.isclose(sum(o["share"] for o in prof["by_op"]), 1.0, rel_tol=1e-6)
    table = format_table({"quick": True, "threads": 1, "versions": {"onnxruntime": "x", "torch": "y", "numpy": "z"},
                          "training": [], "inference": [], "models": [row], "notes": []})
    assert "tiny" in table and f"{row['onnx_ratio']['torch']:.2f}x" in table
    assert "profile of the onnx backend's step on tiny" in table and "Conv" in table


@pytest.mark.torch
def test_a_failing_contestant_or_export_is_a_note_and_the_rest_runs(tiny, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("eager is broken today")

    monkeypatch.setattr(model_rows, "_torch_step", broken)
    row = model_rows.bench_model(tiny, seconds=0.02, rounds=1, threads=1, compile=False)
    assert row["error"] is None and set(row["steps_per_s"]) == {"onnx"} and row["onnx_ratio"] == {}
    assert "torch failed: RuntimeError: eager is broken today" in row["notes"]

    monkeypatch.undo()
    monkeypatch.setitem(models.MODELS, "tiny", TINY)
    monkeypatch.setitem(models.CONVNETS, "tiny", (TINY, _no_torchvision,
                                                  lambda c: c.ResNet(c.BasicBlock, (1, 1, 1, 1), 10, widths=(4, 4, 4, 4))))

    def untrainable(*args, **kwargs):
        from onnxforge.runtime.errors import NotTrainableError

        raise NotTrainableError("no gradient in standard ONNX through: node 'n' (Foo)")

    monkeypatch.setattr(model_rows, "_onnx_step", untrainable)
    row = model_rows.bench_model(tiny, seconds=0.02, rounds=1, threads=1, compile=False)
    assert row["error"] is None and set(row["steps_per_s"]) == {"torch"} and row["onnx_ratio"] == {}
    assert "onnx failed: NotTrainableError: no gradient in standard ONNX through: node 'n' (Foo)" in row["notes"]

    def no_export(*args, **kwargs):
        raise ValueError("Unsupported: prim::Bad\nmore lines")

    monkeypatch.setattr(model_rows, "export", no_export)
    row = model_rows.bench_model(tiny, seconds=0.02, rounds=1, threads=1, compile=False)
    assert row["error"] == "export (torchscript) failed: ValueError: Unsupported: prim::Bad" and row["steps_per_s"] == {}

    def no_build(name):
        raise ImportError("cannot import name 'BertConfig'")

    monkeypatch.setattr(model_rows, "build", no_build)
    row = model_rows.bench_model(tiny, seconds=0.02, rounds=1, threads=1, compile=False)
    assert row["error"] == "building the model failed: ImportError: cannot import name 'BertConfig'"


def test_without_pytorch_every_model_row_says_so_and_nothing_raises(cli_run, tmp_path, monkeypatch):
    monkeypatch.setattr(models, "optional_torch", lambda: None)
    res = cli_run("bench", "--models", "resnet18,mobilenet_v2", "--threads", "1", "--quick", "--quiet", "--no-cuda",
                  "-o", tmp_path / "b.json")
    assert res.exit_code == 0, res.output
    result = json.loads((tmp_path / "b.json").read_text())
    assert [r["model"] for r in result["models"]] == ["resnet18", "mobilenet_v2"]
    assert all(r["error"] == TORCH_MISSING and r["steps_per_s"] == {} for r in result["models"])
    assert result["training"] == [] and result["backends"] == []  # --models alone runs only its section
    assert f"not run: {TORCH_MISSING}" in res.output


def test_model_names_are_checked():
    assert models.parse_names(None) == models.parse_names("all") == tuple(models.MODELS)
    assert models.parse_names(" mobilenet_v2, resnet18,mobilenet_v2") == ("mobilenet_v2", "resnet18")
    with pytest.raises(ConfigError, match="unknown model 'resnet1' in --models; models are: resnet18"):
        models.parse_names("resnet1")


def test_the_cli_refuses_an_unknown_model_and_profile_without_models(cli_run):
    res = cli_run("bench", "--models", "nope")
    assert res.exit_code != 0 and "unknown model 'nope'" in res.output
    res = cli_run("bench", "--profile")
    assert res.exit_code == 2 and "give --models too" in res.output


def test_alternate_drops_a_contestant_that_fails_and_times_the_others():
    calls = {"ok": 0}

    def ok(x, y, lr):
        calls["ok"] += 1

    def bad(x, y, lr):
        raise KeyError("gone")

    failed: dict = {}
    rates = timing.alternate({"ok": ok, "bad": bad}, [(1, 2)], seconds=0.01, rounds=2, failed=failed)
    assert set(rates) == {"ok"} and _positive(rates["ok"]) and calls["ok"] > 3
    assert failed == {"bad": "KeyError: 'gone'"}
    with pytest.raises(KeyError):
        timing.alternate({"bad": bad}, [(1, 2)], seconds=0.01, rounds=1)


def test_the_profile_summary_sums_kernel_times_by_op_after_the_warmup_runs():
    def run(ts, dur):
        return {"cat": "Session", "name": "model_run", "ts": ts, "dur": dur}

    def node(name, op, ts, dur):
        return {"cat": "Node", "name": f"{name}_kernel_time", "ts": ts, "dur": dur, "args": {"op_name": op}}

    events = [run(0, 100), node("c1", "Conv", 1, 90),  # the warm-up run: left out
              run(200, 50), node("c1", "Conv", 201, 30), node("grad/m1", "Mul", 231, 10),
              {"cat": "Node", "name": "c1_fence_before", "ts": 232, "dur": 0},
              run(300, 60), node("c1", "Conv", 301, 40), node("update/m2", "Mul", 341, 10)]
    s = profile.summarize_profile(events, skip_runs=1)
    assert s["steps"] == 2 and s["kernel_ms_per_step"] == pytest.approx(0.045)
    assert s["run_ms_per_step"] == pytest.approx(0.055)
    assert s["by_op"] == [{"op": "Conv", "ms_per_step": pytest.approx(0.035), "share": pytest.approx(70 / 90), "nodes": 1},
                          {"op": "Mul", "ms_per_step": pytest.approx(0.01), "share": pytest.approx(20 / 90), "nodes": 2}]
    assert s["top_nodes"][0]["node"] == "c1"
    assert s["by_phase"] == {"forward": pytest.approx(0.035), "backward": pytest.approx(0.005),
                             "optimizer": pytest.approx(0.005)}


def test_threads_reach_the_training_backends_rows(monkeypatch):
    """``bench --threads 1``: the LSTM's and large MLP's rows (two threads of their own) run on one too."""
    from onnxforge.runtime.benchmark import backend_rows

    seen = {}

    def fake(name, backends, *, threads, **kwargs):
        seen[name] = threads
        return {"onnx": 2.0}

    monkeypatch.setattr(backend_rows, "time_backends", fake)
    skip = {"artifacts": "-", "ort": "-", "torch": "-", "torch.compile": "-", "jax": "-"}
    row = backend_rows.bench_backends("lstm", "adamw", seconds=0.01, rounds=1, skip=skip, threads=1)
    assert seen == {"lstm": 1} and row["threads"] == 1
    row = backend_rows.bench_backends("lstm", "adamw", seconds=0.01, rounds=1, skip=skip)
    assert seen == {"lstm": 2} and row["threads"] == 2
