"""Ordinary label shapes and data files: ``[N, 1]`` squeezed, one-hot turned into ids or refused
in one line, integer targets cast for mse: the same in ``train``, ``eval`` and the Python API;
a file of a kind --data does not read is named in one line, never with numpy's pickle advice."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

from onnxforge.graphs import mlp
from onnxforge.runtime import DataError, Trainer, load
from onnxforge.runtime.tasks.evaluation import evaluate


@pytest.fixture()
def job(tmp_path, digits):
    (x, y), _ = digits
    x, y = x[:96], y[:96]
    np.savez(tmp_path / "ids.npz", x=x, y=y)
    np.savez(tmp_path / "column.npz", x=x, y=y[:, None])
    np.savez(tmp_path / "onehot.npz", x=x, y=np.eye(10, dtype=np.float32)[y])
    bad = np.eye(10, dtype=np.float32)[y]
    bad[5, 0] = 1 - bad[5, 0]
    np.savez(tmp_path / "badhot.npz", x=x, y=bad)
    onnx.save(mlp(64, [16], 10, seed=2), str(tmp_path / "m.onnx"))
    return tmp_path


def _weights(run):
    return {t.name: onnx.numpy_helper.to_array(t) for t in onnx.load(str(run / "model.onnx")).graph.initializer}


def test_column_and_one_hot_labels_train_exactly_like_class_ids(cli_run, job):
    runs = {}
    for name in ("ids", "column", "onehot"):
        result = cli_run("train", str(job / "m.onnx"), "--data", str(job / f"{name}.npz"), "--epochs", "2",
                         "--out", str(job / name), "--quiet", "--threads", "1")
        assert result.exit_code == 0, result.output
        runs[name] = _weights(job / name)
    for name in ("column", "onehot"):
        for key, value in runs["ids"].items():
            np.testing.assert_array_equal(runs[name][key], value, err_msg=f"{name}: {key}")


def test_eval_and_the_api_read_the_same_shapes(cli_run, job):
    cli_run("train", str(job / "m.onnx"), "--data", str(job / "ids.npz"), "--epochs", "1",
            "--out", str(job / "run"), "--quiet")
    results = []
    for name in ("ids", "column", "onehot"):
        out = cli_run("eval", str(job / "run"), "--data", str(job / f"{name}.npz"), "--json")
        assert out.exit_code == 0, out.output
        results.append(json.loads(out.output))
        results.append(evaluate(load(job / "run" / "model.onnx"), job / f"{name}.npz"))
    assert all(r == results[0] for r in results)
    logits = load(job / "run" / "model.onnx").run({"x": np.load(job / "ids.npz")["x"]})["logits"]
    assert results[0]["accuracy"] == pytest.approx((logits.argmax(1) == np.load(job / "ids.npz")["y"]).mean())


def test_labels_that_are_not_one_hot_are_refused_in_one_line(cli_run, job):
    for argv in (["train", str(job / "m.onnx"), "--out", str(job / "r"), "--quiet"], ["eval", str(job / "m.onnx")]):
        result = cli_run(*argv, "--data", str(job / "badhot.npz"))
        assert result.exit_code == 2
        assert result.output.strip() == (
            f"Error: {job / 'badhot.npz'}: labels 'y' have shape [96, 10], like one-hot rows of 10 classes, but row 5 "
            "is not one-hot (exactly one 1, the rest 0); give class ids shaped [?] or one-hot rows")
    assert not (job / "r").exists()


def test_labels_of_another_rank_are_refused_naming_the_shapes(job, digits):
    (x, y), _ = digits
    with pytest.raises(DataError, match=r"^training data: labels 'y' have shape \[8, 2, 5\]; the model's output \[\?, 10\] "
                                        r"needs class ids shaped \[\?\] \(or one-hot rows shaped \[\?, 10\]\)$"):
        Trainer(mlp(64, [16], 10), job / "api", progress=False).fit((x[:8], np.zeros((8, 2, 5), np.int64)))


def test_integer_targets_for_mse_are_cast(job, digits):
    (x, y), _ = digits
    regressor = mlp(64, [16], 3, seed=1)
    targets = np.random.default_rng(0).integers(0, 4, (64, 3))
    a = Trainer(regressor, job / "a", loss="mse", progress=False, threads=1)
    a.fit((x[:64], targets), epochs=1)
    b = Trainer(regressor, job / "b", loss="mse", progress=False, threads=1)
    b.fit((x[:64], targets.astype(np.float32)), epochs=1)
    for name, value in a.parameters().items():
        np.testing.assert_array_equal(b.parameters()[name], value, err_msg=name)


@pytest.mark.parametrize("content,kind", [
    (b"x,y\n1,2\n", "it is text, e.g. CSV"),
    (b"\x89PNG\r\n\x1a\n" + bytes(32), "it is a PNG image"),
    (b"", "it is empty"),
    (b"\x93NUMPY\x01\x00", "it is an .npy array; put it in an .npz with numpy.savez"),
])
def test_a_file_of_another_kind_is_named_in_one_line(cli_run, job, content, kind):
    path = job / "data.bin"
    path.write_bytes(content)
    for argv in (["train", str(job / "m.onnx"), "--out", str(job / "r"), "--quiet"], ["eval", str(job / "m.onnx")]):
        result = cli_run(*argv, "--data", str(path))
        assert result.exit_code == 2
        assert result.output.strip() == (f"Error: '{path}' is not a .npz archive ({kind}); data files are .npz archives "
                                         "(numpy.savez) holding x (or one array per model input) and y")
        assert "pickle" not in result.output
    assert not (job / "r").exists()


def test_pickled_arrays_are_refused_without_pickle_advice(cli_run, job):
    path = job / "objects.npz"
    np.savez(path, x=np.array([{"a": 1}], dtype=object), y=np.zeros(1))
    result = cli_run("eval", str(job / "m.onnx"), "--data", str(path))
    assert result.exit_code == 2
    assert result.output.strip() == (f"Error: '{path}': array 'x' holds Python objects (pickled data), which onnxforge "
                                     "never loads; save numeric arrays")
