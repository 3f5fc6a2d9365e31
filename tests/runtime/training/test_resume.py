"""A run stopped after epoch k and continued with resume ends where an uninterrupted run ends."""

from __future__ import annotations

import json

import numpy as np
import pytest

from onnxforge.graphs import mlp
from onnxforge.runtime import CheckpointError, Trainer


DROPOUT = 0.2  # dropout masks must come out the same after a resume too


def make_trainer(path, **kw):
    model = mlp(64, [32], 10, dropout=DROPOUT, seed=1)
    return Trainer(model, path, lr=2e-3, optimizer="adamw", schedule="cosine", warmup_steps=5, device="cpu",
                   seed=7, progress=False, **kw)


@pytest.mark.parametrize("stop_after", [1, 2])
def test_resume_matches_uninterrupted(tmp_path, digits, stop_after):
    (x, y), (xt, yt) = digits
    x, y = x[:400], y[:400]
    full = make_trainer(tmp_path / "full")
    full.fit((x, y), (xt, yt), epochs=3, batch_size=32)

    class Killed(Exception):
        pass

    def kill_after(record):
        if record["epoch"] == stop_after:
            raise Killed  # the process "dies" right after the epoch's checkpoint; only the folder remains

    with pytest.raises(Killed):
        make_trainer(tmp_path / "split").fit((x, y), (xt, yt), epochs=3, batch_size=32, callback=kill_after)
    second = make_trainer(tmp_path / "split")
    history = second.fit((x, y), (xt, yt), epochs=3, batch_size=32, resume=True)

    assert [h["epoch"] for h in history] == [1, 2, 3]
    a, b = full.parameters(), second.parameters()
    for name in a:
        np.testing.assert_allclose(a[name], b[name], atol=1e-6, rtol=0, err_msg=name)
    assert history[-1]["val_accuracy"] == pytest.approx(full.history[-1]["val_accuracy"])
    saved = json.loads((tmp_path / "split" / "metrics.json").read_text())
    assert [h["epoch"] for h in saved["history"]] == [1, 2, 3]


def test_existing_checkpoint_is_not_overwritten(tmp_path, digits):
    (x, y), _ = digits
    make_trainer(tmp_path / "run").fit((x[:64], y[:64]), epochs=1, batch_size=32)
    before = (tmp_path / "run" / "checkpoint").read_bytes()
    with pytest.raises(CheckpointError, match="already holds a checkpoint"):
        make_trainer(tmp_path / "run").fit((x[:64], y[:64]), epochs=1, batch_size=32)
    assert (tmp_path / "run" / "checkpoint").read_bytes() == before


def test_resume_with_other_settings_is_refused(tmp_path, digits):
    (x, y), _ = digits
    make_trainer(tmp_path / "run").fit((x[:64], y[:64]), epochs=1, batch_size=32)
    with pytest.raises(CheckpointError, match="batch_size=32"):
        make_trainer(tmp_path / "run").fit((x[:64], y[:64]), epochs=2, batch_size=16, resume=True)


def test_resume_without_checkpoint(tmp_path, digits):
    (x, y), _ = digits
    with pytest.raises(CheckpointError, match="holds no run to continue; start the run without --resume"):
        make_trainer(tmp_path / "empty").fit((x[:64], y[:64]), epochs=1, resume=True)
    started = tmp_path / "started"
    (started / "artifacts").mkdir(parents=True)  # killed after start-up began, before the first checkpoint
    with pytest.raises(CheckpointError, match="holds no checkpoint to continue \\(the run was stopped before its "
                                              "first checkpoint was written; start it again with --overwrite\\)"):
        make_trainer(started).fit((x[:64], y[:64]), epochs=1, resume=True)
