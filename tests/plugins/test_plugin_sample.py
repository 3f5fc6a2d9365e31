"""The third-party plugin in samples/plugin_example, pip-installed into this environment: discovery
through its entry point, its native C kernel serving, its function body training, its numpy kernel."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from onnx import numpy_helper

from onnxforge import plugins
from onnxforge.graphs import GraphBuilder, float_input, mlp
from onnxforge.runtime.modelio.card import ModelCard
from onnxforge.runtime import Trainer, load

pytestmark = pytest.mark.slow  # installs a package (a few seconds)

SAMPLE = Path(__file__).resolve().parents[2] / "samples" / "plugin_example"
DIST = "onnxforge-plugin-example"


def _can_build_wheels() -> bool:
    import importlib.metadata as md
    import importlib.util

    try:
        major, minor = (int(p) for p in md.version("setuptools").split(".")[:2])
    except (md.PackageNotFoundError, ValueError):
        return False
    return (major, minor) >= (70, 1) or importlib.util.find_spec("wheel") is not None


@pytest.fixture(scope="module")
def example_plugin(tmp_path_factory):
    """pip install the sample (from a copy, so the checkout stays clean); uninstall afterwards."""
    source = tmp_path_factory.mktemp("plugin") / "plugin_example"
    shutil.copytree(SAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    pip = [sys.executable, "-m", "pip"]
    # Offline with this environment's setuptools when it can build wheels itself (the dev extra
    # brings one that can); otherwise pip fetches a build environment from PyPI.
    offline = ["--no-build-isolation", "--no-index"] if _can_build_wheels() else []
    done = subprocess.run([*pip, "install", "--no-deps", *offline, "-q", str(source)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    try:
        plugins.refresh()
        yield
    finally:
        subprocess.run([*pip, "uninstall", "-y", "-q", DIST], capture_output=True)
        plugins.refresh()


def test_installed_sample_shows_up_in_plugins_list_of_a_fresh_process(example_plugin):
    code = "from onnxforge.cli.main import main; main()"
    done = subprocess.run([sys.executable, "-c", code, "plugins", "list", "--json"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert "example" in data["plugins"] and not data["problems"]
    ops = {(o["domain"], o["name"]): o for o in data["ops"]}
    assert ops[("onnxforge_example", "Squareplus")]["implementations"] == ["function", "native"]
    assert ops[("onnxforge_example", "Squareplus")]["trainable"] is True
    assert ops[("onnxforge_example", "RowMedian")]["implementations"] == ["python"]
    assert ops[("onnxforge_example", "Squareplus")]["plugin"] == "example"


def _mlp_reference(model, x, act):
    p = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    return act(x @ p["fc1.weight"].T + p["fc1.bias"]) @ p["fc2.weight"].T + p["fc2.bias"]


def test_sample_native_op_serves_a_builder_model(example_plugin):
    model = mlp(8, [16], 4, activation="squareplus")
    assert [(n.domain, n.op_type) for n in model.graph.node if n.domain] == [("onnxforge_example", "Squareplus")]
    served = plugins.prepare_inference(model)
    assert not served.functions  # the C kernel replaces the embedded body
    x = np.random.default_rng(0).standard_normal((32, 8)).astype(np.float32) * 3
    got = load(model).run({"x": x})["logits"]
    want = _mlp_reference(model, x.astype(np.float64), lambda h: (h + np.sqrt(h * h + 4.0)) / 2)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_sample_op_trains_through_its_function_body(example_plugin, tmp_path):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((256, 8)).astype(np.float32)
    y = (x[:, 0] * x[:, 1] > 0).astype(np.int64)
    trainer = Trainer(mlp(8, [16], 2, activation="squareplus"), tmp_path / "run", lr=1e-2, progress=False)
    first = trainer.evaluate((x, y))["loss"]
    trainer.fit((x, y), epochs=15, batch_size=32, overwrite=True)
    assert trainer.evaluate((x, y))["loss"] < 0.7 * first  # evaluated by the native kernel


def test_sample_python_kernel_op_runs_and_refuses_training(example_plugin, tmp_path):
    b = GraphBuilder()
    h = b.linear("fc1", "x", 5, 5)
    b.node("RowMedian", [h], ["y"], name="median", domain="onnxforge_example")
    b.opsets["onnxforge_example"] = 1
    model = b.model("median", [float_input("x", ["N", 5])], [float_input("y", ["N", 1])],
                    ModelCard(task="regression", output="y"))
    x = np.random.default_rng(1).standard_normal((7, 5)).astype(np.float32)
    w, bias = (numpy_helper.to_array(t) for t in model.graph.initializer)
    np.testing.assert_allclose(load(model).run({"x": x})["y"], np.median(x @ w.T + bias, axis=1, keepdims=True),
                               rtol=1e-5, atol=1e-6)
    from onnxforge.runtime.errors import NotTrainableError

    with pytest.raises(NotTrainableError, match="onnxforge_example.RowMedian"):
        Trainer(model, tmp_path / "run")
