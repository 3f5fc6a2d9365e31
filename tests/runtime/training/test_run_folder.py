"""The run folder: one run at a time (a lock naming its holder), temporary files never written
through a planted link, files that follow the umask, and one-line errors that keep the last good
checkpoint when the disk is full, a file cannot be written, or --out is a dangling link."""

from __future__ import annotations

import errno
import json
import os

import numpy as np
import onnx
import pytest

import onnxforge.runtime.training.run_folder as run_folder_module
from onnxforge.graphs import mlp
from onnxforge.runtime import CheckpointError, Trainer
from onnxforge.runtime.training.checkpoint_file import verify_checkpoint
from onnxforge.runtime.training.run_folder import RunFolder


def _trainer(path, **kw):
    return Trainer(mlp(64, [16], 10, seed=1), path, lr=2e-3, device="cpu", seed=7, progress=False, threads=1,
                   checkpoint_every=kw.pop("checkpoint_every", 1), **kw)  # every epoch saved: the tests reach into them


@pytest.fixture()
def data(digits):
    (x, y), _ = digits
    return x[:64], y[:64]


def test_a_second_run_on_a_held_folder_is_refused_naming_the_holder(tmp_path, data):
    run = tmp_path / "run"
    _trainer(run).fit(data, epochs=1)
    before = (run / "checkpoint").read_bytes()
    with RunFolder(run).held(create=False):
        with pytest.raises(CheckpointError, match=rf"^run folder '{run}' is in use by another run \(pid {os.getpid()}\); "
                                                  r"wait for it to end or choose another --out$"):
            _trainer(run).fit(data, epochs=2, resume=True)
    assert (run / "checkpoint").read_bytes() == before
    _trainer(run).fit(data, epochs=2, resume=True)  # the lock went with its holder


def test_planted_links_are_never_written_through(tmp_path, data):
    run = tmp_path / "run"
    _trainer(run).fit(data, epochs=1)
    victim = tmp_path / "victim"
    victim.write_bytes(b"keep me")
    os.symlink(victim, run / ".checkpoint.tmp")
    os.symlink(victim, run / ".checkpoint.planted.tmp")
    os.symlink(victim, run / ".metrics.json.x.tmp")
    _trainer(run).fit(data, epochs=2, resume=True)
    assert victim.read_bytes() == b"keep me"
    verify_checkpoint(run / "checkpoint")


def test_run_folder_files_follow_the_umask(tmp_path, data):
    old = os.umask(0o002)
    try:
        _trainer(tmp_path / "run").fit(data, epochs=1)
    finally:
        os.umask(old)
    for name in ("checkpoint", "checkpoint.sha256", "model.onnx", "metrics.json", "source.onnx"):
        assert oct((tmp_path / "run" / name).stat().st_mode & 0o777) == oct(0o664), name


def test_a_full_disk_is_one_line_and_keeps_the_last_good_checkpoint(tmp_path, data, monkeypatch):
    run = tmp_path / "run"
    trainer = _trainer(run)

    def disk_fills_after_epoch_1(record):
        def full(path, properties):
            raise OSError(errno.ENOSPC, "No space left on device")
        monkeypatch.setattr(trainer.backend, "save_checkpoint", full)

    with pytest.raises(CheckpointError, match=rf"^run folder '{run}': cannot write the checkpoint \(the disk is full\); "
                                              r"the last good checkpoint is kept$"):
        trainer.fit(data, epochs=3, callback=disk_fills_after_epoch_1)
    verify_checkpoint(run / "checkpoint")
    assert json.loads((run / "metrics.json").read_text())["history"][-1]["epoch"] == 1
    assert not list(run.glob(".checkpoint.*tmp"))
    monkeypatch.undo()
    resumed = _trainer(run)
    resumed.fit(data, epochs=3, resume=True)
    assert resumed.epoch == 3


def test_a_file_that_cannot_be_written_is_one_line(tmp_path, data, monkeypatch):
    run = tmp_path / "run"
    _trainer(run).fit(data, epochs=1)

    def denied(model, path, **kw):
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    monkeypatch.setattr(run_folder_module, "save_model", denied)
    with pytest.raises(CheckpointError, match=r"cannot write model.onnx \(Permission denied\); the last good checkpoint is kept$"):
        _trainer(run).fit(data, epochs=2, resume=True)
    verify_checkpoint(run / "checkpoint")


def test_a_read_only_file_system_is_named(tmp_path, data, monkeypatch):
    run = tmp_path / "run"

    real_open = os.open

    def read_only(path, *a, **k):
        if str(path).endswith(".lock"):
            raise OSError(errno.EROFS, "Read-only file system")
        return real_open(path, *a, **k)

    monkeypatch.setattr(run_folder_module.os, "open", read_only)
    with pytest.raises(CheckpointError, match=rf"^run folder '{run}': cannot write its lock file \(the file system is read-only\)$"):
        _trainer(run).fit(data, epochs=1)
    assert not run.exists()  # the folder this run created went with the error


def test_a_dangling_out_link_is_one_line(cli_run, tmp_path, data):
    np.savez(tmp_path / "d.npz", x=data[0], y=data[1])
    onnx.save(mlp(64, [16], 10), str(tmp_path / "m.onnx"))
    os.symlink(tmp_path / "nowhere", tmp_path / "out")
    result = cli_run("train", str(tmp_path / "m.onnx"), "--data", str(tmp_path / "d.npz"),
                     "--out", str(tmp_path / "out"), "--quiet")
    assert result.exit_code == 1
    assert result.output.strip() == f"Error: --out '{tmp_path / 'out'}' is a link to '{tmp_path / 'nowhere'}', which does not exist"
    assert not (tmp_path / "nowhere").exists()
