"""``onnxforge bundle`` and build_bundle: the manifest's recipe, followed by a loop that knows only
the manifest (runtime/bundle/reference.py), trains to the weights of ``train --backend onnx``."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

from onnxforge.graphs import convnet, mlp
from onnxforge.runtime import Trainer
from onnxforge.runtime.bundle import BundleOptions, build_bundle
from onnxforge.runtime.bundle.reference import train_bundle
from onnxforge.runtime.errors import ConfigError
from onnxforge.runtime.modelio.files import load_model
from onnxforge.runtime.modelio.weights import load_weights, model_weights, write_safetensors
from onnxforge.runtime.training.epochs import EpochIterator
from onnxforge.samples import load_digits


def _python_run(model, tmp_path, data, options: BundleOptions) -> dict:
    trainer = Trainer(model, tmp_path / "run", backend="onnx", device="cpu", progress=False, threads=1,
                      optimizer=options.optimizer, lr=options.lr, weight_decay=options.weight_decay,
                      schedule=options.schedule, warmup_steps=options.warmup_steps, seed=options.seed)
    trainer.fit(data, epochs=options.epochs, batch_size=options.batch_size, shuffle=options.shuffle)
    return model_weights(load_model(trainer.export()))


@pytest.mark.parametrize("kind", ["mlp-adamw-shuffled-dropout", "convnet-sgd"])
def test_a_loop_reading_only_the_manifest_trains_to_train_backend_onnx_weights(tmp_path, kind):
    if kind.startswith("mlp"):
        data = load_digits()[0]
        model = mlp(64, [32], 10, dropout=0.2, seed=0)
        options = BundleOptions(epochs=2, batch_size=50, lr=0.01, optimizer="adamw", schedule="cosine",
                                warmup_steps=5, seed=3, shuffle=True)
    else:
        data = load_digits("images")[0]
        model = convnet((1, 8, 8), channels=(4, 8), kernel=3, pool=2, classes=10, seed=0)
        options = BundleOptions(epochs=1, batch_size=64, lr=0.05, optimizer="sgd", schedule="linear", shuffle=False)
    manifest = build_bundle(model, tmp_path / "b", options, data=data)
    weights, losses = train_bundle(tmp_path / "b")
    expected = _python_run(model, tmp_path, data, options)
    assert sorted(weights) == sorted(expected)
    assert max(float(np.abs(weights[k] - expected[k]).max()) for k in expected) < 1e-6
    assert len(losses) == manifest["training"]["total_steps"] and losses[-1] < losses[0]


def test_manifest_describes_state_data_and_recipes(tmp_path, digits):
    (x, y), val = digits
    m = build_bundle(mlp(64, [32], 10, seed=0), tmp_path / "b", BundleOptions(epochs=3, batch_size=100, seed=5),
                     data=(x, y), val=val)
    saved = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert saved == json.loads(json.dumps(m))
    assert m["format"] == "onnxforge-training-bundle" and m["format_version"] == 1
    assert m["training"]["steps_per_epoch"] == 15 and m["schedule"]["total_steps"] == 45
    (packed,) = [e for e in m["step"]["state"] if e["input"] == "stepgraph.params"]
    assert [x["name"] for x in packed["members"]] == ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]
    assert packed["shape"] == [sum(x["size"] for x in packed["members"])]
    moments = [e for e in m["step"]["state"] if e["input"].startswith("adamw.")]
    assert [e["scale"] for e in moments] == pytest.approx([0.1, 0.001])
    step = onnx.load(str(tmp_path / "b" / "step.onnx"))
    assert {i.name for i in step.graph.input} == {i["name"] for i in m["step"]["inputs"]}
    assert m["step"]["scalars"]["adamw"] == ["stepgraph.adamw.k1", "stepgraph.adamw.k2", "stepgraph.adamw.decay"]
    # the orders are the trainer's: one numpy permutation per epoch from default_rng(seed)
    data = load_weights(tmp_path / "b" / "train.safetensors")
    it = EpochIterator([x], y, 100, shuffle=True, rng=np.random.default_rng(5))
    for epoch in range(3):
        assert np.array_equal(data["order"][epoch], it.rng.permutation(len(y)))
    assert np.array_equal(data["input/x"], x) and np.array_equal(data["target"], y)
    assert load_weights(tmp_path / "b" / "val.safetensors")["target"].shape == val[1].shape


def test_model_onnx_offsets_point_at_each_parameter_and_weights_import_takes_the_names(tmp_path, digits, cli_run):
    m = build_bundle(mlp(64, [16], 10, seed=0), tmp_path / "b", BundleOptions(), data=digits[0])
    raw = (tmp_path / "b" / "model.onnx").read_bytes()
    params = load_weights(tmp_path / "b" / "parameters.safetensors")
    for name, (offset, length) in m["model"]["weight_offsets"].items():
        assert np.array_equal(np.frombuffer(raw[offset:offset + length], "<f4"), params[name].ravel())
    trained = {k: v + 1.0 for k, v in params.items()}
    write_safetensors(trained, tmp_path / "trained.safetensors")
    result = cli_run("weights", "import", tmp_path / "b" / "model.onnx", tmp_path / "trained.safetensors",
                     "-o", tmp_path / "t.onnx")
    assert result.exit_code == 0, result.output
    back = model_weights(load_model(tmp_path / "t.onnx"))
    assert all(np.array_equal(back[k], trained[k]) for k in trained)


def test_cli_bundle_and_its_refusals(tmp_path, cli_run):
    from onnxforge.samples import path

    model = tmp_path / "m.onnx"
    onnx.save(mlp(64, [8], 10, seed=0), model)
    out = tmp_path / "b"
    result = cli_run("bundle", model, "-o", out, "--data", path("digits_train.npz"), "--epochs", "2", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["total_steps"] == 2 * 45 and not summary["web"]
    assert {"step.onnx", "eval.onnx", "model.onnx", "README.md", "train.mjs"} <= set(summary["files"])
    assert "node train.mjs" in (out / "README.md").read_text()
    again = cli_run("bundle", model, "-o", out)
    assert again.exit_code != 0 and "already exists" in again.output
    with pytest.raises(ConfigError, match="does not hold onnxruntime-web"):
        build_bundle(model, tmp_path / "w", web=True, ort_web=str(tmp_path))
    bad = cli_run("bundle", model, "-o", tmp_path / "x", "--web", "--web-backends", "webgl")
    assert bad.exit_code == 2 and "wasm, webgpu" in bad.output
    assert not (tmp_path / "x").exists()
