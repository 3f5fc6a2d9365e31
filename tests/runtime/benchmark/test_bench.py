"""The benchmark's structure (never its speed): the PyTorch twins compute what the ONNX models
compute, and a tiny run produces the table and JSON the README documents."""

from __future__ import annotations

import json
import os
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from onnxforge.runtime import load
from onnxforge.runtime.benchmark import backend_rows, jax_twin
from onnxforge.runtime.benchmark import suite as benchmark
from onnxforge.runtime.benchmark.workloads import TWINS
from onnxforge.runtime.benchmark import timing
from onnxforge.graphs.lstm_gates import onnx_to_torch

TINY = {"scale": 0.01, "rounds": 1, "calls": 5, "inf_rounds": 1, "mem_steps": 1, "backend_seconds": 0.02}


@pytest.mark.parametrize("name", sorted(benchmark.workloads()))
def test_torch_twin_matches_onnx_model(name):
    """Same weights, same outputs: the comparison is between identical models."""
    w = benchmark.workloads()[name]
    model = w.build()
    feeds, _ = w.data(4, np.random.default_rng(0))
    ours = load(model, "cpu").run(feeds)["logits"]
    with torch.no_grad():
        twin = w.torch_model(model).eval()(*[torch.from_numpy(v) for v in feeds.values()]).numpy()
    assert ours.shape == twin.shape
    np.testing.assert_allclose(ours, twin, rtol=1e-4, atol=1e-5)


def test_twin_gates_reorder_onnx_iofc_to_torch_ifgo():
    m = np.arange(8).reshape(8, 1)  # hidden 2: rows 0-1 i, 2-3 o, 4-5 f, 6-7 c
    assert onnx_to_torch(m).ravel().tolist() == [0, 1, 4, 5, 6, 7, 2, 3]


def _check_row(row, keys):
    for who in ("onnxforge", "ort", "torch"):
        for k in keys:
            value = row[who][k]
            assert math.isfinite(value) and value > 0, (who, k, value)


def test_tiny_run_through_the_cli_writes_table_and_json(cli_run, tmp_path, monkeypatch):
    monkeypatch.setattr(benchmark, "_sizes", lambda quick: dict(TINY))
    monkeypatch.setattr(benchmark, "BACKEND_ROWS", (("mlp_small", "mlp", "sgd"),))  # one row: the peers compile
    out = tmp_path / "bench.json"
    res = cli_run(*["bench", "--quick", "--family", "mlp", "--threads", "1", "--quiet", "-o", str(out)],
                             catch_exceptions=False)
    assert res.exit_code == 0, res.output
    table = res.output
    assert "training (steps/s)" in table and "vs torch" in table
    assert "mlp 64-128-10 b64" in table and "mlp 784-1024-1024-10 b256" in table
    assert "b1 latency median (us)" in table and "b256 throughput (ex/s)" in table
    assert "of peak" in table and "peak memory of a training run" in table
    assert "CUDA section skipped" in table  # the CPU-only test environment
    result = json.loads(out.read_text())
    assert result["threads"] == 1 and result["quick"] is True
    assert [(r["workload"], r["optimizer"]) for r in result["training"]] == [
        ("mlp 64-128-10", "adamw"), ("mlp 784-1024-1024-10", "adamw"), ("mlp 784-1024-1024-10", "sgd")]
    # the headline rows: onnxforge at threads="auto" (1 for the small MLP) against PyTorch on every core
    assert [r["workload"] for r in result["defaults"]] == ["mlp 64-128-10", "mlp 784-1024-1024-10"]
    small, big = result["defaults"]
    assert small["ours_threads"] == 1 and big["ours_threads"] == os.cpu_count()
    assert small["torch_threads"] == os.cpu_count()
    _check_row(small, ["steps_per_s"])
    assert "each at its default" in table and "b256 SGD" in table
    assert result["large_mlp_sgd"]["optimizer"] == "sgd" and result["large_mlp_sgd"]["torch_gflops"] > 0
    for row in result["training"]:
        _check_row(row, ["steps_per_s"])
        assert row["ratio_vs_torch"] == pytest.approx(row["onnxforge"]["steps_per_s"] / row["torch"]["steps_per_s"])
    _check_row(result["inference"][0], ["latency_us_median", "latency_us_p99", "throughput_per_s"])
    large = result["large_mlp"]
    assert large["gemm_peak_gflops"] > 0
    assert large["onnxforge_fraction_of_peak"] == pytest.approx(large["onnxforge_gflops"] / large["gemm_peak_gflops"])
    for who in ("onnxforge", "torch"):
        assert result["memory"][who]["peak_rss_mb"] > result["memory"][who]["before_training_rss_mb"] > 0
    assert result["cuda"] is None
    (row,) = result["backends"]
    assert (row["workload"], row["optimizer"], row["threads"], row["batch"]) == ("mlp 64-128-10", "sgd", 1, 64)
    _check_backend_row(row, table)


def _check_backend_row(row, table):
    """Every contestant that can run here has a row entry; each one that cannot, a note."""
    missing = backend_rows.missing_contestants()
    assert set(row["steps_per_s"]) == set(backend_rows.CONTESTANTS) - set(missing)
    for who, rate in row["steps_per_s"].items():
        assert math.isfinite(rate) and rate > 0, who
        if who != "onnx":
            assert row["onnx_ratio"][who] == pytest.approx(row["steps_per_s"]["onnx"] / rate)
    assert "training backends and peers" in table and "ahead of the onnx backend: " in table
    for who, why in missing.items():
        assert f"training backends' rows: {who} skipped ({why})" in table


@pytest.mark.skipif(jax_twin.jax_missing() is not None, reason="JAX is not installed (an optional peer)")
@pytest.mark.parametrize("name", ["mlp_small", "convnet", "lstm"])
def test_jax_twin_computes_what_the_torch_twin_computes_and_steps_like_adamw(name):
    model, x, y, batch, _ = timing.workload(name)
    family = timing.WORKLOADS[name][0]
    net = TWINS[family](model)
    twin = jax_twin.JaxTwin(TWINS[family](model), "adamw", 0.01)
    with torch.no_grad():
        np.testing.assert_allclose(twin.forward(x[:8]), net(torch.from_numpy(x[:8])).numpy(), rtol=1e-4, atol=1e-5)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01)
    for s in range(3):
        xb, yb = x[s * batch:(s + 1) * batch], y[s * batch:(s + 1) * batch]
        loss = torch.nn.functional.cross_entropy(net(torch.from_numpy(xb)), torch.from_numpy(yb))
        opt.zero_grad()
        loss.backward()
        opt.step()
        assert twin.step([xb], yb, 1e-3) == pytest.approx(loss.item(), abs=1e-5)
    with torch.no_grad():
        np.testing.assert_allclose(twin.forward(x[:8]), net(torch.from_numpy(x[:8])).numpy(), rtol=1e-4, atol=1e-5)


def test_bench_rejects_an_unknown_family(cli_run):
    res = cli_run(*["bench", "--family", "transformer"])
    assert res.exit_code == 2
    assert "Invalid value for '--family'" in res.output


def test_run_benchmarks_rejects_bad_arguments():
    from onnxforge.runtime.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown model family 'gru'"):
        benchmark.run_benchmarks(families=("gru",), progress=False)


def test_script_help_runs_as_documented():
    script = Path(__file__).resolve().parents[3] / "benchmarks" / "bench.py"
    proc = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "python benchmarks/bench.py" in proc.stdout and "--quick" in proc.stdout
