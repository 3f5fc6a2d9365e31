"""The ConvNet and LSTM digit samples run as documented and reach the accuracy the issue asks for."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def run(args, cwd):
    out = subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=cwd)
    assert out.returncode == 0, out.stderr
    return float(re.search(r"held-out accuracy ([\d.]+)%", out.stdout).group(1))


@pytest.mark.slow
@pytest.mark.parametrize("script,threshold", [("convnet_digits.py", 98.0), ("lstm_digits.py", 96.0)])
def test_sample_reaches_accuracy(tmp_path, script, threshold):
    assert run([str(ROOT / "samples" / script), "--out", str(tmp_path / "run")], tmp_path) >= threshold


@pytest.mark.parametrize("module", ["convnet_digits", "lstm_digits"])
def test_sample_runs_as_a_module(tmp_path, module):
    accuracy = run(["-m", f"onnxforge.samples.{module}", "--epochs", "1", "--out", str(tmp_path / "run")], tmp_path)
    assert 0.0 <= accuracy <= 100.0
    assert (tmp_path / "run" / "model.onnx").is_file()
