"""The README's "Exported models: folded parameters, gradient checks" section runs as written, and
what it claims holds: inspect names the folded convolution in one line, convert --for-training
keeps every parameter (batch norm's included), gradcheck passes."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import onnx
import pytest

ROOT = Path(__file__).resolve().parents[3]
TITLE = "\n## Exported models: folded parameters, gradient checks\n"

pytestmark = [pytest.mark.torch, pytest.mark.slow]


def test_section_runs_as_written(cli_run, tmp_path, monkeypatch):
    text = (ROOT / "README.md").read_text()
    assert TITLE in text
    section = text.split(TITLE, 1)[1].split("\n## ", 1)[0]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    monkeypatch.chdir(tmp_path)
    outputs = []
    for line in re.search(r"```bash\n(.*?)```", section, re.S).group(1).strip().splitlines():
        args = shlex.split(line)
        assert args[0] == "onnxforge"
        result = cli_run(*args[1:], *(["--quiet"] if args[1] in ("convert", "gradcheck") and "--json" not in args else []))
        assert result.exit_code == 0, f"{line}\n{result.output}"
        outputs.append(result.output)
    folded = [ln for ln in outputs[0].splitlines() if ln.startswith("folded export:")]
    assert len(folded) == 1 and "Conv (" in folded[0] and "--for-training" in folded[0]
    names = {t.name for t in onnx.load("convbn.onnx").graph.initializer}
    assert {"0.weight", "0.bias", "1.weight", "1.bias", "1.running_mean", "1.running_var", "5.weight"} <= names
    assert "passed: 6 parameters" in outputs[2] and "running_mean" not in outputs[2]  # the statistics are not trained, so not checked
    report = json.loads(outputs[3])
    assert report["passed"] and [p["name"] for p in report["parameters"]] == ["0.weight", "0.bias"]
    refused = cli_run("convert", "folded.onnx", "-o", "again.onnx", "--for-training", "--quiet")
    assert refused.exit_code != 0 and "node_Conv" in refused.output and "Re-export" in refused.output
