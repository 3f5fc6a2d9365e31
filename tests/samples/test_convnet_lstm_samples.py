"""The ConvNet and LSTM digit samples run as documented and reach the accuracy the issue asks for."""

from __future__ import annotations

import json
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


@pytest.mark.slow
def test_readme_section_runs_as_written(tmp_path):
    text = (ROOT / "README.md").read_text()
    section = text.split("## ConvNets and LSTMs", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    exe = str(Path(sys.executable).with_name("onnxforge"))
    # the README's first step writes the files its examples read (data/...)
    made = subprocess.run([exe, "samples", "data"], capture_output=True, text=True, cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    for command in block.replace("\\\n", " ").splitlines():
        argv = command.split()
        assert argv[0] == "onnxforge"
        out = subprocess.run([exe, *argv[1:]], capture_output=True, text=True, cwd=tmp_path)
        assert out.returncode == 0, f"{command}\n{out.stderr}"
    assert json.loads(out.stdout)["accuracy"] >= 0.96
    convnet = json.loads((tmp_path / "runs" / "convnet" / "metrics.json").read_text())
    assert convnet["history"][-1]["val_accuracy"] >= 0.98
