"""benchmarks/serve_bench.py runs end to end on a small load and reports every answer correct."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[3] / "benchmarks" / "serve_bench.py"


def test_benchmark_reports_rates_percentiles_and_correct_answers():
    done = subprocess.run([sys.executable, str(SCRIPT), "--clients", "4", "--requests", "40", "--rows", "3",
                           "--max-batch", "1", "--max-batch", "8", "--json"],
                          capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["in_process"]["requests_per_s"] > 0
    assert [r["max_batch"] for r in report["runs"]] == [1, 8]
    for run in report["runs"]:
        assert run["correct"] == run["answered"] == 40 and run["errors"] == []
        assert run["server_exit_code"] == 0 and run["requests_per_s"] > 0
        assert 0 < run["latency_ms"]["p50"] <= run["latency_ms"]["p90"] <= run["latency_ms"]["p99"] <= run["latency_ms"]["max"]


COMPARE = SCRIPT.parent / "serve_compare.py"


@pytest.mark.slow  # about 15 s: two servers and the trivial one started, 12 loads each
def test_compare_runs_onnxforge_and_the_trivial_server_end_to_end(tmp_path):
    """The comparison's runner on its own contestants (the peers need their venvs): answers checked,
    every load run over HTTP and gRPC, the table printed, its JSON written."""
    out = tmp_path / "runs.json"
    done = subprocess.run([sys.executable, str(COMPARE), "--servers", "onnxforge,onnxforge-batching", "--rounds", "1",
                           "--seconds", "0.2", "--batches", "1,32", "--concurrency", "2", "--json", str(out)],
                          capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(out.read_text())
    runs = {(r["server"], r["protocol"], r["batch"]) for r in report["runs"]}
    assert runs == {(s, p, b) for s in ("onnxforge", "onnxforge-batching", "trivial") for p in ("http", "grpc")
                    for b in (1, 32)}
    assert report["failures"] == [] and all(r["errors"] == 0 and r["requests"] > 0 for r in report["runs"])
    assert "onnxforge-batching" in done.stdout and "req/s, p99 ms, server CPU us per request" in done.stdout
