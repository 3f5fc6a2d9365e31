"""The judged cross-runtime check. data/lora_run/ holds a run that CPython 3.11 with the `cpu` extra
trained (`--lora 4` on a PyTorch-exported nn.TransformerEncoder classifier; made by
data/make_lora_fixture.py). Here: training from the same source still writes those files (so the
fixture is what this code writes), and, where the installed onnxruntime has LoRA support (1.20+,
the CPython 3.13 leg; defined only there, not skipped elsewhere), a Python process that never imports
onnxforge runs model.lora.onnx with adapters.onnx_adapter active and gets model.onnx's outputs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from click.testing import CliRunner
from onnx import numpy_helper

from onnxforge.cli.main import cli
from onnxforge.runtime.adapters import read_adapter

FIXTURE = Path(__file__).parent / "data" / "lora_run"
# the options data/make_lora_fixture.py trained the fixture with
ARGS = ["--loss", "cross-entropy", "--epochs", "2", "--batch-size", "32", "--lr", "0.01", "--no-shuffle", "--seed", "1",
        "--lora", "4", "--lora-alpha", "8", "--quiet"]


def test_training_still_writes_the_fixture(tmp_path):
    result = CliRunner().invoke(cli, ["train", str(FIXTURE / "source.onnx"), "--data", str(FIXTURE / "data.npz"),
                                      "--out", str(tmp_path / "run"), *ARGS])
    assert result.exit_code == 0, result.output
    ours, kept = read_adapter(tmp_path / "run" / "adapters.onnx_adapter").parameters, \
        read_adapter(FIXTURE / "adapters.onnx_adapter").parameters
    assert sorted(ours) == sorted(kept) and len(ours) == 10
    for name in kept:
        np.testing.assert_allclose(ours[name], kept[name], rtol=1e-3, atol=1e-5, err_msg=name)
    base = {t.name: t.SerializeToString() for t in onnx.load(FIXTURE / "source.onnx").graph.initializer}
    lora = {t.name: t.SerializeToString() for t in onnx.load(FIXTURE / "model.lora.onnx").graph.initializer}
    assert all(lora[name] == value for name, value in base.items())  # base weights bit for bit


PLAIN = r'''
import sys
import numpy as np
import onnxruntime as ort
folder, = sys.argv[1:]
x = np.load(folder + "/data.npz")["x"]
adapter = ort.LoraAdapter()
adapter.Load(folder + "/adapters.onnx_adapter")
options = ort.RunOptions()
options.add_active_adapter(adapter)
with_adapter = ort.InferenceSession(folder + "/model.lora.onnx").run(None, {"x": x}, options)[0]
merged = ort.InferenceSession(folder + "/model.onnx").run(None, {"x": x})[0]
base = ort.InferenceSession(folder + "/source.onnx").run(None, {"x": x})[0]
assert not [m for m in sys.modules if m.split(".")[0] == "onnxforge"], "onnxforge was imported"
print(ort.__version__, float(np.abs(with_adapter - merged).max()), float(np.abs(merged).max()),
      float(np.abs(merged - base).max()))
'''

if hasattr(ort, "LoraAdapter"):  # onnxruntime 1.20+: the CPython 3.13 leg

    def test_plain_onnxruntime_runs_the_adapter_as_the_merged_model():
        out = subprocess.run([sys.executable, "-I", "-c", PLAIN, str(FIXTURE)], capture_output=True, text=True,
                             check=True).stdout.split()
        version, difference, largest, change = out[0], *map(float, out[1:])
        assert version == ort.__version__
        assert change > 1e-3  # the adapter changes the outputs
        assert difference <= 1e-5 * largest, (difference, largest)


def test_fixture_adapters_are_in_the_merged_weights():
    """model.onnx is source + A @ B (scale folded into B), computed here independently."""
    merged = {t.name: numpy_helper.to_array(t) for t in onnx.load(FIXTURE / "model.onnx").graph.initializer}
    source = {t.name: numpy_helper.to_array(t) for t in onnx.load(FIXTURE / "source.onnx").graph.initializer}
    adapters = read_adapter(FIXTURE / "adapters.onnx_adapter").parameters
    for name in {k[: -len(".lora_A")] for k in adapters}:
        delta = adapters[name + ".lora_A"].astype(np.float64) @ adapters[name + ".lora_B"]
        want = source[name] + (delta if delta.shape == source[name].shape and name.startswith("onnx::") else delta.T)
        np.testing.assert_allclose(merged[name], want, rtol=1e-6, atol=1e-6, err_msg=name)
