from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def test_train_digits_sample_runs_as_written(tmp_path):
    out = subprocess.run([sys.executable, str(ROOT / "samples" / "train_digits.py"), "--epochs", "20",
                          "--out", str(tmp_path / "run")], capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    accuracy = float(re.search(r"exported model: test accuracy ([\d.]+)%", out.stdout).group(1))
    assert accuracy >= 95.0


def test_readme_python_api_example_runs_as_written(tmp_path):
    text = (ROOT / "README.md").read_text()
    section = text.split("## The Python API", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    accuracy = float(re.search(r"accuracy ([\d.]+)", out.stdout).group(1))
    assert accuracy >= 0.97
