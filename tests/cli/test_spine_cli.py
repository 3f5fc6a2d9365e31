"""The spine's commands through click's CliRunner: exit codes and exact messages."""

from __future__ import annotations

import json

import numpy as np
import onnxruntime
import pytest

from onnxforge.runtime.training.backends import BACKENDS
from onnxforge.samples import path as sample_path

# `--backend auto` for an MLP: the artifacts backend where onnxruntime-training is installed, else onnx
AUTO_MLP = "artifacts" if BACKENDS["artifacts"].available() is None else "onnx"


@pytest.fixture
def built(cli_run, tmp_path):
    out = tmp_path / "mlp.onnx"
    res = cli_run("build", "mlp", "--inputs", 64, "--hidden", "32", "--classes", 10, "-o", out)
    assert res.exit_code == 0, res.output
    assert res.output.startswith(f"wrote {out} (")
    return out


def test_build_train_eval_infer_end_to_end(cli_run, tmp_path, built):
    run = tmp_path / "run"
    res = cli_run("train", built, "--data", sample_path("digits_train.npz"), "--val", sample_path("digits_test.npz"),
                 "--epochs", 8, "--batch-size", 32, "--lr", 0.003, "--optimizer", "adamw", "--loss", "auto",
                 "--seed", 0, "--device", "cpu", "--out", run, "--json", "--quiet")
    assert res.exit_code == 0, res.output
    result = json.loads(res.output)
    assert result["epochs"] == 8 and len(result["history"]) == 8
    assert result["final"]["val_accuracy"] > 0.9
    assert result["backend"] == AUTO_MLP  # what the backend builds lies in a folder named after it
    for name in ("model.onnx", "checkpoint", "metrics.json", f"{AUTO_MLP}/training_model.onnx"):
        assert (run / name).is_file(), name

    res = cli_run("eval", run, "--data", sample_path("digits_test.npz"), "--json")
    assert res.exit_code == 0, res.output
    metrics = json.loads(res.output)
    assert metrics["accuracy"] == pytest.approx(result["final"]["val_accuracy"])
    assert metrics["loss"] == pytest.approx(result["final"]["val_loss"], rel=1e-5)

    # The exported model runs in a plain onnxruntime session and predicts what the trainer evaluated.
    with np.load(sample_path("digits_test.npz")) as f:
        x, y = f["x"], f["y"]
    plain = onnxruntime.InferenceSession(str(run / "model.onnx"), providers=["CPUExecutionProvider"])
    acc = float((plain.run(None, {"x": x})[0].argmax(1) == y).mean())
    assert acc == pytest.approx(metrics["accuracy"])

    np.save(tmp_path / "x.npy", x[:5])
    res = cli_run("infer", run / "model.onnx", "--input", tmp_path / "x.npy", "-o", tmp_path / "out.npz")
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert lines[0].startswith("0: class ") and lines[-1] == f"wrote {tmp_path / 'out.npz'}"
    with np.load(tmp_path / "out.npz") as out:
        np.testing.assert_array_equal(out["predictions"], plain.run(None, {"x": x[:5]})[0].argmax(1))

    res = cli_run("infer", run / "model.onnx", "--input", tmp_path / "x.npy", "--json")
    assert len(json.loads(res.output)["predictions"]) == 5


def test_resume_from_the_cli(cli_run, tmp_path, built):
    run = tmp_path / "run"
    common = ["--data", sample_path("digits_train.npz"), "--batch-size", 64, "--device", "cpu", "--out", run, "--quiet"]
    assert cli_run("train", built, "--epochs", 1, *common).exit_code == 0
    res = cli_run("train", built, "--epochs", 2, *common)
    assert res.exit_code == 1
    assert "already holds a checkpoint; pass --resume to continue it" in res.output
    res = cli_run("train", built, "--epochs", 2, "--resume", "--json", *common)
    assert res.exit_code == 0, res.output
    assert [h["epoch"] for h in json.loads(res.output)["history"]] == [1, 2]


def test_inspect(cli_run, built):
    res = cli_run("inspect", built, "--json")
    assert res.exit_code == 0
    info = json.loads(res.output)
    assert info["inputs"] == [{"name": "x", "shape": ["N", 64], "dtype": "float32"}]
    assert info["parameter_count"] == 64 * 32 + 32 + 32 * 10 + 10
    assert info["trainable"] is True and info["metadata"]["builder"] == "mlp"
    res = cli_run("inspect", built)
    assert "trainable here: yes" in res.output and "fc1.weight: float32 [32, 64]" in res.output
    assert "  x: float32 [N, 64]" in res.output


def test_inspect_splits_the_model_card_from_other_metadata(cli_run, built, tmp_path):
    import onnx

    model = onnx.load(built)
    onnx.helper.set_model_props(model, {**{p.key: p.value for p in model.metadata_props}, "author": "someone"})
    onnx.save(model, tmp_path / "tagged.onnx")
    info = json.loads(cli_run("inspect", tmp_path / "tagged.onnx", "--json").output)
    assert info["other_metadata"] == {"author": "someone"}
    assert info["metadata"]["builder"] == "mlp" and info["metadata"]["task"] == "classification"
    assert not any(k.startswith("onnxforge.") for k in info["metadata"])


def _softplus_model(tmp_path):
    """x @ w -> Softplus: ONNX Runtime's gradient builder has no Softplus gradient, onnxforge's own has."""
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["h"], name="mm"), helper.make_node("Softplus", ["h"], ["y"], name="sp")],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2])],
        [numpy_helper.from_array(np.eye(2, dtype=np.float32), "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path / "softplus.onnx"
    path.write_bytes(model.SerializeToString())
    np.savez(tmp_path / "d.npz", x=np.ones((4, 2), np.float32), y=np.ones((4, 2), np.float32))
    return path


def test_inspect_says_per_backend_which_trains_a_model(cli_run, tmp_path):
    path = _softplus_model(tmp_path)
    res = cli_run("inspect", path)
    # each backend's own up-front check, whether or not the backend is installed here; auto goes to
    # the one that can
    assert "trainable here: yes (backend auto picks onnx)" in res.output
    assert "  artifacts backend: no (Softplus (sp))" in res.output
    assert "  onnx backend: yes" in res.output
    res = cli_run("train", path, "--data", tmp_path / "d.npz", "--loss", "mse", "--epochs", 1,
                  "--out", tmp_path / "r", "--json", "--quiet")
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["backend"] == "onnx"


@pytest.mark.artifacts
def test_the_artifacts_backend_refuses_ops_without_gradients_before_work(cli_run, tmp_path):
    path = _softplus_model(tmp_path)
    res = cli_run("train", path, "--data", tmp_path / "d.npz", "--loss", "mse", "--backend", "artifacts",
                  "--out", tmp_path / "r")
    assert res.exit_code == 1
    assert res.output.strip() == ("Error: ONNX Runtime cannot compute gradients through: Softplus (sp); "
                                  "such a model can be run but not trained")
    assert not (tmp_path / "r").exists()  # refused before any work


def test_doctor(cli_run):
    res = cli_run("doctor", "--json")
    assert res.exit_code == 0
    report = json.loads(res.output)
    assert report["onnxruntime"] == onnxruntime.__version__
    assert report["auto_device"] in ("cpu", "cuda") and "CPUExecutionProvider" in report["providers"]


def test_every_command_has_full_sentence_help(cli_run):
    for args in (["--help"], ["build", "--help"], ["build", "mlp", "--help"], ["train", "--help"], ["eval", "--help"],
                 ["infer", "--help"], ["inspect", "--help"], ["doctor", "--help"], ["demo", "--help"]):
        res = cli_run(*args)
        assert res.exit_code == 0
        assert "Usage:" in res.output and "." in res.output.split("Options:")[0]


@pytest.fixture
def data_case(tmp_path):
    def make(**arrays):
        path = tmp_path / "case.npz"
        np.savez(path, **arrays)
        return path
    return make


X_OK = np.zeros((10, 64), np.float32)
Y_OK = np.arange(10) % 10


@pytest.mark.parametrize("arrays,message", [
    (None, "data file '{missing}' does not exist"),
    ({"x": np.zeros((10, 63), np.float32), "y": Y_OK},
     "input 'x' expects size 64 on axis 1 float32 [N, 64], got shape [10, 63]"),
    ({"x": np.zeros((10, 8, 8), np.float32), "y": Y_OK}, "input 'x' expects rank 2 float32 [N, 64], got shape [10, 8, 8]"),
    ({"x": np.array([["a"] * 64] * 10), "y": Y_OK}, "input 'x' must be numeric; got dtype <U1"),
    ({"x": X_OK, "y": np.full(10, 10)},
     "label 10 is outside [0, 10) for a model with 10 classes: 'y' holds it at row 0 (10 labels out of range in all)"),
    ({"x": X_OK, "y": np.full(10, -1)},
     "label -1 is outside [0, 10) for a model with 10 classes: 'y' holds it at row 0 (10 labels out of range in all)"),
    ({"x": X_OK, "y": np.full(10, 0.5)},
     "labels 'y' must be integer class ids; got 0.5 at row 0 (10 non-integer values in all)"),
    ({"x": np.where(np.eye(10, 64) > 0, np.nan, 0).astype(np.float32), "y": Y_OK},
     "input 'x' holds NaN at row 0, column 0; 10 NaN or Inf values in all"),
    ({"x": np.full((10, 64), np.inf, np.float32), "y": Y_OK}, "input 'x' holds +Inf at row 0, column 0; 640 NaN or Inf values in all"),
    ({"x": np.zeros((0, 64), np.float32), "y": np.zeros(0, np.int64)}, "the dataset is empty (input 'x' has shape [0, 64])"),
    ({"x": X_OK, "y": np.zeros(9, np.int64)}, "arrays have different numbers of examples: 'x' has 10, 'y' has 9"),
    ({"features": X_OK, "y": Y_OK}, "has no array 'x' for model input 'x'; it holds: features, y"),
    ({"x": X_OK}, "has no targets array 'y'; it holds: x"),
])
def test_bad_data_gives_one_clear_line(cli_run, tmp_path, built, data_case, arrays, message):
    path = tmp_path / "missing.npz" if arrays is None else data_case(**arrays)
    res = cli_run(*["train", str(built), "--data", str(path), "--out", str(tmp_path / "r"), "--quiet"])
    assert res.exit_code == 2  # bad data: the user's input is wrong
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), res.output
    assert message.format(missing=path) in lines[0]
    assert "Traceback" not in res.output


def test_bad_options_are_rejected_by_parameter_types(cli_run, tmp_path):
    res = cli_run(*["build", "mlp", "--inputs", "64", "--hidden", "12,x", "--classes", "10", "-o", str(tmp_path / "m.onnx")])
    assert res.exit_code == 2
    assert "expected comma-separated positive integers like 128,64; got '12,x'" in res.output
    res = cli_run(*["build", "mlp", "--inputs", "64", "-o", str(tmp_path / "m.onnx")])
    assert res.exit_code == 2 and "give exactly one of --classes" in res.output
    res = cli_run(*["train", "nope.onnx", "--data", "d.npz", "--device", "tpu"])
    assert res.exit_code == 2 and "'tpu' is not one of 'auto', 'cpu', 'cuda'" in res.output


def test_missing_model_file(cli_run, tmp_path):
    res = cli_run(*["eval", str(tmp_path / "nope.onnx"), "--data", str(sample_path("digits_test.npz"))])
    assert res.exit_code == 1
    assert res.output == f"Error: model file '{tmp_path / 'nope.onnx'}' does not exist\n"


def test_demo_reaches_97_percent(cli_run, tmp_path):
    res = cli_run("demo", "--json", "--out", tmp_path / "demo")
    assert res.exit_code == 0, res.output
    result = json.loads(res.output)
    assert result["test_accuracy"] >= 0.97
    assert (tmp_path / "demo" / "model.onnx").is_file()
