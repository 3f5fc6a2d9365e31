"""benchmarks/lora_big_model.py at a small size (the README's 2.15 GB figure comes from its default
size): the external-data model it writes trains with --lora in a fresh process, and the merged
weight in model.onnx equals base + A @ B from the adapter file."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[3] / "benchmarks" / "lora_big_model.py"


def test_the_big_model_benchmark_runs_small(tmp_path):
    out = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path / "m"), "--layers", "2", "--width", "256", "--json"],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["weight_bytes"] == 4 * (2 * 256 * 256 + 10 * 256)
    assert result["adapter_max_change"] > 1e-4  # the adapters trained
    assert result["merged_max_error"] < 1e-6
    assert result["peak_rss"] > result["weight_bytes"] and result["trainable"]["trainable_parameters"] == 4 * (2 * 512 + 266)
    for name in ("model.onnx.data", "model.lora.onnx.data", "source.onnx.data"):
        assert (tmp_path / "m" / "run" / name).stat().st_size >= result["weight_bytes"]
