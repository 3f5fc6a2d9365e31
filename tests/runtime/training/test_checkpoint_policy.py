"""The checkpoint policy (``checkpoint_every`` / ``train --checkpoint-every``): which epochs write
the checkpoint, model.onnx and metrics.json, that a run stopped between saves resumes to the
uninterrupted weights, and that each epoch's validation (on a session fed the current weights)
gives the numbers the exported model gives."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

from onnxforge.graphs import mlp
from onnxforge.runtime import load
from onnxforge.runtime.errors import ConfigError
from onnxforge.runtime.tasks.evaluation import evaluate
from onnxforge.runtime.training import callbacks as callbacks_module
from onnxforge.runtime.training.config import CHECKPOINT_EVERY, CheckpointPolicy
from onnxforge.runtime.training.trainer import Trainer


@pytest.fixture(scope="module")
def data(digits):
    (x, y), (xt, yt) = digits
    return (x[:96], y[:96]), (xt[:64], yt[:64])


def _trainer(path, **kw):
    return Trainer(mlp(64, [16], 10, seed=1, dropout=0.1), path, lr=3e-3, device="cpu", seed=4, progress=False,
                   threads=1, **kw)


def _saved_epochs(trainer, monkeypatch) -> list:
    saved = []
    real = trainer.save_checkpoint
    monkeypatch.setattr(trainer, "save_checkpoint", lambda batches: (saved.append(trainer.epoch), real(batches)))
    return saved


@pytest.mark.parametrize("text, seconds, epochs", [("30s", 30.0, None), ("5m", 300.0, None), ("1.5h", 5400.0, None),
                                                   ("3", None, 3), ("3 epochs", None, 3), ("1 epoch", None, 1), (2, None, 2)])
def test_policies_parse(text, seconds, epochs):
    assert CheckpointPolicy.parse(text) == CheckpointPolicy(seconds=seconds, epochs=epochs)


@pytest.mark.parametrize("bad", ["0", "x", "-1s", "3 ep", 0, True, 2.5, None])
def test_bad_policies_are_one_clear_error(bad):
    with pytest.raises(ConfigError, match=r"^checkpoint_every must be a time like '30s', '5m', '1h' or a number of "
                                          rf"epochs like '3' or '3 epochs'; got {bad!r}$".replace("(", r"\(").replace(")", r"\)")):
        CheckpointPolicy.parse(bad)


def test_due_by_epochs_by_time_and_always_at_the_last_epoch():
    every2, half_minute = CheckpointPolicy(epochs=2), CheckpointPolicy.parse(CHECKPOINT_EVERY)
    assert [e for e in range(1, 6) if every2.due(e, 5, 0.0)] == [2, 4, 5]
    assert not half_minute.due(3, 5, 29.9) and half_minute.due(3, 5, 30.0) and half_minute.due(5, 5, 0.0)


def test_the_default_saves_before_step_1_and_after_the_last_epoch_only(tmp_path, data, monkeypatch):
    trainer = _trainer(tmp_path / "run")
    saved = _saved_epochs(trainer, monkeypatch)
    writes = []
    monkeypatch.setattr(trainer.run, "write_model", lambda model, path=None, real=trainer.run.write_model:
                        (writes.append(path), real(model, path))[1])
    trainer.fit(*data, epochs=4, batch_size=32)
    assert saved == [0, 4]
    assert writes == [trainer.run.source, None]  # source.onnx at the start, model.onnx once, at the end
    assert [h["epoch"] for h in json.loads((tmp_path / "run" / "metrics.json").read_text())["history"]] == [1, 2, 3, 4]
    assert load(tmp_path / "run" / "model.onnx", "cpu").metadata["trained"]["epochs"] == 4


def test_every_n_epochs_and_by_time(tmp_path, data, monkeypatch):
    trainer = _trainer(tmp_path / "a", checkpoint_every="2 epochs")
    saved = _saved_epochs(trainer, monkeypatch)
    trainer.fit(*data, epochs=5, batch_size=32)
    assert saved == [0, 2, 4, 5]
    clock = iter(range(0, 1000, 20))  # each reading 20 s after the one before
    monkeypatch.setattr(callbacks_module.time, "monotonic", lambda: next(clock))
    timed = _trainer(tmp_path / "b", checkpoint_every="30s")
    saved = _saved_epochs(timed, monkeypatch)
    timed.fit(*data, epochs=5, batch_size=32)
    assert saved == [0, 2, 4, 5]  # 20 s after a save: not yet; 40 s: saved


def test_a_run_stopped_between_saves_resumes_to_the_uninterrupted_weights(tmp_path, data, training_backend):
    full = _trainer(tmp_path / "full", backend=training_backend, checkpoint_every=3)
    full.fit(*data, epochs=5, batch_size=16)

    def stop_after_epoch_4(record):
        if record["epoch"] == 4:
            raise KeyboardInterrupt

    split = _trainer(tmp_path / "split", backend=training_backend, checkpoint_every=3)
    with pytest.raises(KeyboardInterrupt):
        split.fit(*data, epochs=5, batch_size=16, callback=stop_after_epoch_4)
    assert [h["epoch"] for h in json.loads((tmp_path / "split" / "metrics.json").read_text())["history"]] == [1, 2, 3]
    resumed = Trainer.from_run(tmp_path / "split", device="cpu", progress=False, threads=1)
    resumed.fit(data[0], resume=True)
    assert [h["epoch"] for h in resumed.history] == [1, 2, 3, 4, 5]
    want, got = full.parameters(), resumed.parameters()
    for name, value in want.items():
        np.testing.assert_allclose(got[name], value, rtol=0, atol=1e-6, err_msg=name)


def test_epoch_validation_gives_what_the_exported_model_gives(tmp_path, data):
    trainer = _trainer(tmp_path / "run", checkpoint_every=1)
    history = trainer.fit(*data, epochs=2, batch_size=32)
    exported = evaluate(load(tmp_path / "run" / "model.onnx", "cpu"), data[1], loss="cross-entropy")
    assert history[-1]["val_accuracy"] == exported["accuracy"]  # dropout off in both
    assert history[-1]["val_loss"] == pytest.approx(exported["loss"], abs=1e-6)
    again = trainer.evaluate(data[1])  # the same session, the same weights: the same numbers
    assert again["loss"] == history[-1]["val_loss"]


def test_cli_says_how_often_and_refuses_a_bad_policy(tmp_path, data, cli_run):
    help_text = cli_run("train", "--help").output
    assert "--checkpoint-every" in help_text and "[default: 30s]" in help_text
    np.savez(tmp_path / "d.npz", x=data[0][0], y=data[0][1])
    onnx.save(mlp(64, [8], 10), str(tmp_path / "m.onnx"))
    result = cli_run("train", tmp_path / "m.onnx", "--data", tmp_path / "d.npz", "--checkpoint-every", "soon",
                     "--out", tmp_path / "run")
    assert result.exit_code == 2
    assert result.output.strip().splitlines()[-1] == (
        "Error: Invalid value for '--checkpoint-every': expected a time like '30s', '5m', '1h' or a number of "
        "epochs like '3' or '3 epochs'; got 'soon'")
    assert not (tmp_path / "run").exists()
