"""``build convnet`` / ``build lstm`` and the unchanged train, eval, infer and inspect commands on
them, through click's CliRunner: exit codes and messages."""

from __future__ import annotations

import json

import numpy as np
import pytest

from onnxforge.graphs import lstm
from onnxforge.runtime.modelio.files import get_metadata, load_model, save_model
from onnxforge.samples import path as sample_path


@pytest.mark.parametrize("kind,build_args,data", [
    ("convnet", ["--input-shape", "1,8,8", "--channels", "8,16", "--classes", 10, "--batchnorm"], "digits_images"),
    ("lstm", ["--inputs", 8, "--hidden", 32, "--classes", 10, "--layers", 2], "digits_rows"),
])
def test_build_train_eval_infer(cli_run, tmp_path, kind, build_args, data):
    model = tmp_path / f"{kind}.onnx"
    res = cli_run("build", kind, *build_args, "-o", model, "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["path"] == str(model)
    assert get_metadata(load_model(model))["builder"] == kind

    run = tmp_path / "run"
    res = cli_run("train", model, "--data", sample_path(f"{data}_train.npz"), "--val", sample_path(f"{data}_test.npz"),
                 "--epochs", 3, "--lr", 5e-3, "--device", "cpu", "--out", run, "--json", "--quiet")
    assert res.exit_code == 0, res.output
    result = json.loads(res.output)
    assert result["loss_function"] == "cross-entropy" and result["epochs"] == 3
    assert result["history"][-1]["loss"] < result["history"][0]["loss"]
    assert result["final"]["val_accuracy"] > 0.5

    res = cli_run("eval", run, "--data", sample_path(f"{data}_test.npz"), "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["accuracy"] == pytest.approx(result["final"]["val_accuracy"])

    res = cli_run("infer", run / "model.onnx", "--input", sample_path(f"{data}_test.npz"), "-o", tmp_path / "p.npz")
    assert res.exit_code == 0, res.output
    assert res.output.startswith("0: class ")
    with np.load(tmp_path / "p.npz") as f, np.load(sample_path(f"{data}_test.npz")) as d:
        assert f["predictions"].shape == (360,)
        assert (f["predictions"] == d["y"]).mean() == pytest.approx(result["final"]["val_accuracy"])


def test_token_tagger_from_the_command_line(cli_run, tmp_path):
    rng = np.random.default_rng(0)
    x = rng.integers(1, 6, (64, 9)).astype(np.int64)
    y = np.where(np.arange(9) < 7, x, 0)  # tag = the token itself; the last two steps are padding
    np.savez(tmp_path / "tags.npz", x=x, y=y)
    model = tmp_path / "tagger.onnx"
    res = cli_run("build", "lstm", "--vocab", 6, "--embed", 4, "--hidden", 8, "--classes", 6, "--head", "tagger",
                 "-o", model)
    assert res.exit_code == 0, res.output
    res = cli_run("train", model, "--data", tmp_path / "tags.npz", "--epochs", 2, "--device", "cpu",
                 "--out", tmp_path / "run", "--quiet", "--json")
    assert res.exit_code == 0, res.output
    res = cli_run("infer", tmp_path / "run" / "model.onnx", "--input", tmp_path / "tags.npz")
    assert res.exit_code == 0, res.output
    first = res.output.splitlines()[0]
    assert first.startswith("0: tags ") and len(first.split()) == 2 + 9


@pytest.mark.parametrize("args,code,message", [
    (["convnet", "--input-shape", "8,8", "--classes", 10], 2, "expected exactly 3 numbers"),
    (["convnet", "--input-shape", "1,4,4", "--channels", "4,4,4", "--classes", 3], 1,
     "Error: stage 3 would pool a 1x1 map with a 2x2 window"),
    (["convnet", "--input-shape", "1,8,8", "--classes", 1], 2, "--classes"),
    (["lstm", "--inputs", 8, "--vocab", 5, "--embed", 2, "--classes", 3], 2, "give exactly one of --inputs"),
    (["lstm", "--vocab", 5, "--classes", 3], 2, "--vocab needs --embed"),
    (["lstm", "--inputs", 8, "--embed", 4, "--classes", 3], 2, "--embed applies to token models only"),
    (["lstm", "--inputs", 8, "--classes", 3, "--head", "decoder"], 2, "'decoder' is not one of 'sequence', 'tagger'"),
])
def test_bad_options(cli_run, tmp_path, args, code, message):
    res = cli_run("build", *args, "-o", tmp_path / "m.onnx")
    assert res.exit_code == code, res.output
    assert message in res.output
    assert "Traceback" not in res.output
    assert not (tmp_path / "m.onnx").exists()


def test_bidirectional_builds_and_trains(cli_run, tmp_path):
    model = tmp_path / "bi.onnx"
    res = cli_run("build", "lstm", "--inputs", 8, "--hidden", 8, "--classes", 10, "--bidirectional", "-o", model)
    assert res.exit_code == 0, res.output
    res = cli_run("inspect", model, "--json")
    assert json.loads(res.output)["trainable"] is True
    res = cli_run("train", model, "--data", sample_path("digits_rows_test.npz"), "--epochs", 1, "--device", "cpu",
                 "--out", tmp_path / "run", "--quiet", "--json")
    assert res.exit_code == 0, res.output


def _reverse_lstm(tmp_path):
    model = lstm(8, hidden=4, classes=10)
    node = next(n for n in model.graph.node if n.op_type == "LSTM")
    next(a for a in node.attribute if a.name == "direction").s = b"reverse"
    return save_model(model, tmp_path / "reverse.onnx")


def test_inspect_says_which_backend_trains_a_reverse_lstm(cli_run, tmp_path):
    res = cli_run("inspect", _reverse_lstm(tmp_path))
    # the artifacts backend (ONNX Runtime's gradients) cannot; "auto" picks the onnx backend for
    # LSTM models, whose own differentiation can: inspect says so per backend
    assert "trainable here: yes (backend auto picks onnx)" in res.output
    assert "  artifacts backend: no (LSTM (lstm1) with direction=reverse" in res.output
    assert "  onnx backend: yes" in res.output


@pytest.mark.artifacts
def test_untrainable_lstm_is_refused_before_work(cli_run, tmp_path):
    path = _reverse_lstm(tmp_path)
    res = cli_run("train", path, "--data", sample_path("digits_rows_test.npz"), "--out", tmp_path / "run",
                  "--backend", "artifacts")
    assert res.exit_code == 1
    assert res.output.strip().splitlines()[-1].startswith(
        "Error: ONNX Runtime cannot compute gradients through: LSTM (lstm1) with direction=reverse")
    assert not (tmp_path / "run").exists()
