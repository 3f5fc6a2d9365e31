"""The README's "Converting models" section runs as written (in a scratch folder holding the files
`onnxforge samples data` writes), and what it claims holds: frozen weights unchanged, the .pt2 runs."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper


ROOT = Path(__file__).resolve().parents[3]


def section() -> str:
    text = (ROOT / "README.md").read_text()
    assert "\n## Converting models\n" in text
    return text.split("\n## Converting models\n", 1)[1].split("\n## ", 1)[0]


@pytest.mark.slow
def test_converting_models_section_runs_as_written(cli_run, tmp_path, monkeypatch):
    text = section()
    code = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    monkeypatch.chdir(tmp_path)
    assert cli_run("samples", "data").exit_code == 0  # the README's first step: the files its examples read
    commands = re.search(r"```bash\n(.*?)```", text, re.S).group(1).strip().splitlines()
    assert len(commands) == 8
    for line in commands:
        args = shlex.split(line)
        assert args[0] == "onnxforge"
        result = cli_run(*args[1:], *(["--quiet"] if args[1] in ("convert", "train") else []))
        assert result.exit_code == 0, f"{line}\n{result.output}"

    def weights(path):
        return {t.name: numpy_helper.to_array(t) for t in onnx.load(path).graph.initializer}

    before, after = weights("net.onnx"), weights("runs/finetune/model.onnx")
    for name in ("0.weight", "0.bias", "1.weight", "1.bias"):
        assert before[name].tobytes() == after[name].tobytes()
    assert not np.array_equal(before["5.weight"], after["5.weight"])
    module = torch.export.load("finetuned.pt2").module()
    x = torch.randn(3, 1, 8, 8)
    from onnxforge.runtime import load

    session = load("runs/finetune/model.onnx")
    assert [i.name for i in session.inputs] == ["input"]   # nn.Sequential.forward(self, input)
    np.testing.assert_allclose(module(x).detach().numpy(), session.run({"input": x.numpy()})["output"], atol=1e-4)
    assert onnx.load("tokens15.onnx").opset_import[0].version == 15
    assert torch.export.load("tokens.pt2").module()(torch.randint(0, 20, (2, 12))).shape == (2, 4)
