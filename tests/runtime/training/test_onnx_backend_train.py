"""The `onnx` training backend through the Trainer: the same run as the artifacts backend, the
accuracies the issue asks for, exact resume from its checkpoints, and its refusals."""

from __future__ import annotations

import numpy as np
import pytest

from onnxforge.graphs import convnet, lstm, mlp
from onnxforge.runtime import CheckpointError, Trainer
from onnxforge.runtime.training.backends import BACKENDS
from onnxforge.samples import load_digits

artifacts_available = BACKENDS["artifacts"].available() is None


def _fit(model, path, backend, data, val=None, *, epochs=1, batch_size=32, **kw):
    t = Trainer(model, path, backend=backend, device="cpu", progress=False, threads=1, **kw)
    t.fit(data, val, epochs=epochs, batch_size=batch_size, overwrite=True)
    return t


@pytest.mark.skipif(not artifacts_available, reason="onnxruntime-training is not installed")
@pytest.mark.parametrize("optimizer,tol", [("sgd", 1e-5), ("adamw", 1e-4)])
@pytest.mark.parametrize("build", ["mlp", "convnet-bn"])
def test_one_epoch_on_both_backends_ends_on_the_same_weights(tmp_path, optimizer, tol, build):
    if build == "mlp":
        (x, y), _ = load_digits()
        make = lambda: mlp(64, [128], 10, seed=3)  # noqa: E731
    else:
        (x, y), _ = load_digits("images")
        make = lambda: convnet((1, 8, 8), channels=(8, 16), classes=10, batchnorm=True, seed=1)  # noqa: E731
    lr = 0.05 if optimizer == "sgd" else 3e-3
    runs = {b: _fit(make(), tmp_path / b, b, (x, y), optimizer=optimizer, lr=lr, schedule="cosine", seed=2)
            for b in ("artifacts", "onnx")}
    a, o = runs["artifacts"].parameters(), runs["onnx"].parameters()
    assert set(a) == set(o)
    for name in a:
        np.testing.assert_allclose(o[name], a[name], rtol=0, atol=tol, err_msg=name)
    assert runs["onnx"].history[0]["loss"] == pytest.approx(runs["artifacts"].history[0]["loss"], rel=1e-4)


def test_resume_from_its_checkpoint_equals_an_uninterrupted_run(tmp_path):
    (x, y), _ = load_digits()
    data = (x[:256], y[:256])
    kw = dict(lr=3e-3, schedule="cosine", seed=4)
    full = _fit(mlp(64, [32], 10, dropout=0.2, seed=1), tmp_path / "full", "onnx", data, epochs=3, **kw)

    class Stop(Exception):
        pass

    def stop_after_first(record):
        if record["epoch"] == 1:
            raise Stop

    part = Trainer(mlp(64, [32], 10, dropout=0.2, seed=1), tmp_path / "part", backend="onnx", device="cpu",
                   progress=False, threads=1, **kw)
    with pytest.raises(Stop):
        part.fit(data, epochs=3, batch_size=32, callback=stop_after_first)
    resumed = Trainer.from_run(tmp_path / "part", backend="onnx", device="cpu", progress=False, threads=1)
    resumed.fit(data, epochs=3, batch_size=32, resume=True)
    assert [h["epoch"] for h in resumed.history] == [1, 2, 3]
    for name, value in full.parameters().items():
        np.testing.assert_allclose(resumed.parameters()[name], value, rtol=0, atol=1e-6, err_msg=name)
    assert full.backend.state().step == resumed.backend.state().step == 24


def test_a_checkpoint_of_another_model_is_refused(tmp_path):
    (x, y), _ = load_digits()
    t = _fit(mlp(64, [32], 10, seed=1), tmp_path / "a", "onnx", (x[:64], y[:64]))
    other = Trainer(mlp(64, [16], 10, seed=1), tmp_path / "b", backend="onnx", progress=False)
    with pytest.raises(CheckpointError, match="holds other parameters"):
        other.backend.load_checkpoint(t.checkpoint_path)
    (tmp_path / "junk").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="could not be read"):
        other.backend.load_checkpoint(tmp_path / "junk")


def test_freeze_keeps_frozen_parameters_bit_for_bit(tmp_path):
    (x, y), _ = load_digits()
    model = mlp(64, [32], 10, seed=1)
    t = _fit(model, tmp_path / "f", "onnx", (x[:128], y[:128]), freeze=["fc1.*"], lr=1e-2)
    from onnx import numpy_helper

    start = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    got = t.parameters()
    np.testing.assert_array_equal(got["fc1.weight"], start["fc1.weight"])
    assert not np.array_equal(got["fc2.weight"], start["fc2.weight"])


@pytest.mark.slow
@pytest.mark.parametrize("case", ["mlp", "convnet", "lstm"])
def test_accuracy_on_the_digits(tmp_path, case):
    if case == "mlp":
        (x, y), (xt, yt) = load_digits()
        model, kw, epochs, floor = mlp(64, [128], 10, seed=0), dict(lr=3e-3), 20, 0.97
    elif case == "convnet":
        (x, y), (xt, yt) = load_digits("images")
        model, kw, epochs, floor = convnet(batchnorm=True, seed=0), dict(lr=3e-3, schedule="cosine"), 10, 0.98
    else:
        (x, y), (xt, yt) = load_digits("rows")
        model, kw, epochs, floor = lstm(8, hidden=64, seed=0), dict(lr=5e-3, schedule="cosine"), 20, 0.96
    t = _fit(model, tmp_path / case, "onnx", (x, y), (xt, yt), epochs=epochs, **kw)
    assert t.history[-1]["val_accuracy"] >= floor, t.history[-1]


@pytest.mark.slow
def test_the_date_translator_reaches_97_percent_exact_match(tmp_path):
    from onnxforge.graphs.seq2seq import seq2seq
    from onnxforge.runtime import load
    from onnxforge.runtime.inference.decoding import decode, sequence_metrics
    from onnxforge.samples import dates

    train, test = dates.make_dataset(10000, 1000, 0)
    model = seq2seq(len(dates.src_vocab()), len(dates.tgt_vocab()), 32, 64, attention="general", seed=0,
                    max_len=dates.TGT_WIDTH, src_tokens=dates.src_vocab(), tgt_tokens=dates.tgt_vocab())
    t = Trainer(model, tmp_path / "dates", backend="onnx", lr=5e-3, schedule="cosine", seed=0, progress=False)
    t.fit(({"src": train["src"]}, train["tgt"]), epochs=6, batch_size=64, overwrite=True)
    tokens, _ = decode(load(tmp_path / "dates" / "model.onnx", device="cpu"), test["src"], max_len=dates.TGT_WIDTH)
    assert sequence_metrics(tokens, test["tgt"])["exact_match"] >= 0.97


def test_auto_prefers_the_backend_measured_faster_for_the_model(tmp_path):
    from onnxforge.runtime.training.backends import auto_order, backend_class

    node = lstm(3, hidden=4, classes=2, seed=0)
    assert any(n.op_type == "LSTM" for n in node.graph.node)
    assert auto_order(node)[0] is BACKENDS["onnx"]  # the LSTM node: onnx 3-6x
    assert backend_class("auto", node) is BACKENDS["onnx"]
    assert Trainer(node, tmp_path / "lstm", progress=False, device="cpu").backend_name == "onnx"
    plain = mlp(4, [3], 2, seed=0)
    assert auto_order(plain)[0] is BACKENDS["artifacts"]
    expected = "artifacts" if artifacts_available else "onnx"
    assert backend_class("auto", plain) is BACKENDS[expected]
    assert Trainer(plain, tmp_path / "mlp", progress=False, device="cpu").backend_name == expected
