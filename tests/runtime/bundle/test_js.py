"""The JavaScript side of training bundles: the library under Node's test runner, and the judged
check: an MLP (SGD) and a ConvNet (AdamW, warm-up, cosine) bundled with ``--web --no-shuffle``
train to the same weights in headless Chromium (the page, WASM), in Node.js (``train.mjs``) and
in ``onnxforge train --backend onnx``.

Needs Node.js, the JS folder's packages (``npm ci`` in runtime/bundle/js) and Debian's chromium:
``.ci/run`` installs them; in CI a missing one fails the run, elsewhere the tests are skipped as an
optional peer."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import onnx
import pytest

from onnxforge.graphs import convnet, mlp
from onnxforge.runtime.bundle.build import JS_DIR
from onnxforge.runtime.modelio.files import load_model
from onnxforge.runtime.modelio.weights import load_weights, model_weights
from onnxforge.samples import path as sample

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")


def _need(browser: bool = False) -> None:
    missing = [] if shutil.which("node") else ["node"]
    missing += [p for p in ("onnxruntime-node", "onnxruntime-web", "playwright-core")
                if not (JS_DIR / "node_modules" / p / "package.json").is_file()]
    if browser and not os.access(CHROMIUM, os.X_OK):
        missing.append(CHROMIUM)
    if missing:
        message = f"{', '.join(missing)} missing (npm ci in {JS_DIR}; apt-get install chromium)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(f"optional peer: {message}")


def _node(*args, timeout: int = 600, **env) -> subprocess.CompletedProcess:
    run = subprocess.run(["node", *map(str, args)], capture_output=True, text=True, timeout=timeout,
                         env={**os.environ, **env})
    assert run.returncode == 0, f"node {args[0]} failed:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    return run


@pytest.mark.slow
def test_the_js_library_under_nodes_test_runner():
    _need()
    run = _node("--test", JS_DIR / "test", ONNXFORGE_PYTHON=sys.executable)
    assert "# fail 0" in run.stdout and "# pass 6" in run.stdout, run.stdout[-2000:]


CASES = {
    "mlp-sgd": (lambda: mlp(64, [128], 10, seed=0), "digits", ["--optimizer", "sgd", "--lr", "0.1", "--epochs", "5"]),
    "convnet-adamw": (lambda: convnet((1, 8, 8), channels=(16, 32), kernel=3, pool=2, classes=10, seed=0), "digits_images",
                      ["--optimizer", "adamw", "--lr", "0.003", "--epochs", "4", "--schedule", "cosine", "--warmup-steps", "10"]),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", list(CASES))
def test_page_node_and_python_train_the_same_weights(tmp_path, cli_run, case):
    _need(browser=True)
    build, data, options = CASES[case]
    model = tmp_path / "model.onnx"
    onnx.save(build(), model)
    common = ["--data", sample(f"{data}_train.npz"), "--val", sample(f"{data}_test.npz"), "--no-shuffle", *options]
    bundle = tmp_path / "bundle"
    assert cli_run("bundle", model, "-o", bundle, "--web", *common).exit_code == 0
    trained = cli_run("train", model, "--backend", "onnx", "--out", tmp_path / "run", "--quiet", "--json", *common)
    assert trained.exit_code == 0, trained.output
    python = model_weights(load_model(tmp_path / "run" / "model.onnx"))
    node = json.loads(_node(bundle / "train.mjs", "--quiet", ONNXFORGE_NODE_MODULES=JS_DIR / "node_modules").stdout)
    shot = tmp_path / f"{case}.png"
    page = json.loads(_node(JS_DIR / "run-page.mjs", bundle, "--screenshot", shot, "--save-weights",
                            tmp_path / "page.safetensors", "--save-model", tmp_path / "page.onnx").stdout)
    assert page.get("error") is None and page["page_errors"] == [] and page["refused"] == []
    assert page["backend"] == page["shown"]["backend"] == "wasm"
    steps = json.loads(trained.output)["steps"]
    assert page["steps"] == node["steps"] == steps == len(page["losses"])
    for result in (page, node):
        diff = max(float(np.abs(np.asarray(result["weights"][k]).reshape(v.shape) - v).max()) for k, v in python.items())
        assert diff < 1e-4, f"{result['backend']}: weights differ from train --backend onnx by {diff}"
    final = json.loads(trained.output)["final"]
    assert abs(page["val_accuracy"] - final["val_accuracy"]) < 0.01
    if case == "mlp-sgd":
        assert page["val_accuracy"] >= 0.90
    assert page["shown"]["accuracy"] == f"{100 * page['val_accuracy']:.2f}%"
    assert (page["shown"]["step"], page["shown"]["epoch"]) == (str(steps), str(page["epochs"]))
    assert shot.stat().st_size > 20_000  # the finished page: the curve and the numbers (looked at by hand)
    # what the page's buttons download: the weights go back into the model by name; the model.onnx runs
    downloaded = load_weights(tmp_path / "page.safetensors")
    assert cli_run("weights", "import", model, tmp_path / "page.safetensors", "-o", tmp_path / "back.onnx").exit_code == 0
    back = model_weights(load_model(tmp_path / "back.onnx"))
    page_model = model_weights(load_model(tmp_path / "page.onnx"))
    for k, v in downloaded.items():
        assert np.array_equal(back[k], v) and np.array_equal(page_model[k], v)


@pytest.mark.slow
def test_webgpu_trains_the_unpacked_step_to_the_same_weights(tmp_path, cli_run):
    """Twelve parameters: the packed step's Split/Concat would need more than WebGPU's 10 storage
    buffers, so the bundle carries step_unpacked.onnx and the page uses it on WebGPU (Chromium's
    SwiftShader adapter here; a page with no adapter falls back to WASM)."""
    _need(browser=True)
    model = tmp_path / "deep.onnx"
    onnx.save(mlp(64, [16, 16, 16, 16, 16], 10, seed=0), model)
    bundle = tmp_path / "bundle"
    result = cli_run("bundle", model, "-o", bundle, "--web", "--data", sample("digits_train.npz"), "--no-shuffle",
                     "--epochs", "1", "--batch-size", "256", "--optimizer", "adamw", "--lr", "0.01")
    assert result.exit_code == 0, result.output
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["step_for_backend"] == {"webgpu": "step_unpacked.onnx", "wasm": "step.onnx", "node": "step.onnx"}
    page = json.loads(_node(JS_DIR / "run-page.mjs", bundle, "--backend", "auto").stdout)
    assert page.get("error") is None and page["page_errors"] == [] and page["refused"] == []
    assert page["backend"] == page["shown"]["backend"] == "webgpu"
    node = json.loads(_node(bundle / "train.mjs", "--quiet", ONNXFORGE_NODE_MODULES=JS_DIR / "node_modules").stdout)
    assert page["steps"] == node["steps"] == 6
    diff = max(float(np.abs(np.subtract(page["weights"][k], node["weights"][k])).max()) for k in node["weights"])
    assert diff < 1e-5, f"WebGPU and Node differ by {diff}"


@pytest.mark.slow
def test_lora_bundle_trains_the_adapters_train_lora_trains(tmp_path, cli_run):
    """``--lora``: Node trains the adapters `train --lora` trains (its .onnx_adapter holds B with
    alpha/rank folded in), and the trained model.onnx (adapters as initialisers) answers as the
    run's merged model.onnx does."""
    _need()
    from onnxforge.runtime.adapters import read_adapter
    from onnxforge.runtime.ort.distribution import ort

    model = tmp_path / "mlp.onnx"
    onnx.save(mlp(64, [32], 10, seed=0), model)
    common = ["--data", sample("digits_train.npz"), "--no-shuffle", "--epochs", "1", "--lr", "0.01",
              "--lora", "4", "--lora-alpha", "8"]
    assert cli_run("bundle", model, "-o", tmp_path / "b", *common).exit_code == 0
    assert cli_run("train", model, "--out", tmp_path / "run", "--quiet", *common).exit_code == 0
    manifest = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert manifest["lora"]["rank"] == 4 and manifest["lora"]["weights"] == ["fc1.weight", "fc2.weight"]
    node = json.loads(_node(tmp_path / "b" / "train.mjs", "--quiet", "--model-out", tmp_path / "t.onnx",
                            ONNXFORGE_NODE_MODULES=JS_DIR / "node_modules").stdout)
    adapters = read_adapter(tmp_path / "run" / "adapters.onnx_adapter").parameters
    assert sorted(adapters) == sorted(e["name"] for e in manifest["parameters"]["trainable"])
    for name, value in adapters.items():
        scale = 2.0 if name.endswith("lora_B") else 1.0
        assert np.abs(np.asarray(node["weights"][name]).reshape(value.shape) * scale - value).max() < 1e-5, name
    x = np.load(sample("digits_test.npz"))["x"]
    ours = ort().InferenceSession(str(tmp_path / "t.onnx")).run(None, {"x": x})[0]
    merged = ort().InferenceSession(str(tmp_path / "run" / "model.onnx")).run(None, {"x": x})[0]
    assert np.abs(ours - merged).max() < 1e-4


@pytest.mark.slow
@pytest.mark.parametrize("case", ["lstm", "nplm-int64-tokens"])
def test_other_models_train_in_node_as_in_python(tmp_path, cli_run, case):
    """An LSTM (the step's Scan-based LSTM rule) and a word model fed int64 token ids (BigInt64Array
    feeds), shuffled, with AdamW: Node's weights equal `train --backend onnx`'s."""
    _need()
    if case == "lstm":
        assert cli_run("build", "lstm", "--inputs", "8", "--hidden", "16", "--classes", "10", "-o", tmp_path / "m.onnx").exit_code == 0
        data = sample("digits_rows_train.npz")
    else:
        rng = np.random.default_rng(0)
        words = "the cat dog sat on a mat ran fast slow red blue".split()
        data = tmp_path / "corpus.txt"
        data.write_text("\n".join(" ".join(rng.choice(words, 8)) for _ in range(200)))
        assert cli_run("build", "nplm", "--vocab-from", data, "--context", "3", "--embed", "8", "--hidden", "16",
                       "-o", tmp_path / "m.onnx").exit_code == 0
    common = ["--data", data, "--epochs", "1", "--batch-size", "64", "--lr", "0.01", "--seed", "2"]
    assert cli_run("bundle", tmp_path / "m.onnx", "-o", tmp_path / "b", *common).exit_code == 0
    assert cli_run("train", tmp_path / "m.onnx", "--backend", "onnx", "--out", tmp_path / "run", "--quiet", *common).exit_code == 0
    python = model_weights(load_model(tmp_path / "run" / "model.onnx"))
    node = json.loads(_node(tmp_path / "b" / "train.mjs", "--quiet", ONNXFORGE_NODE_MODULES=JS_DIR / "node_modules").stdout)
    diff = max(float(np.abs(np.asarray(node["weights"][k]).reshape(v.shape) - v).max()) for k, v in python.items())
    assert diff < 1e-4, f"Node and train --backend onnx differ by {diff}"
