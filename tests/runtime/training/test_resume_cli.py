"""``train --resume`` takes the run's settings from the run folder: MODEL and options may be left
out, options given again must agree (each that differs is named), --epochs follows the stated
schedule rule, a finished run says nothing was done, errors leave no folder behind, and Ctrl-C
prints the command that resumes."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

import onnxforge.runtime.training.epochs as epochs_module  # the step loop (run_epoch) looks up learning_rate there
from onnxforge.graphs import mlp


@pytest.fixture()
def job(tmp_path, digits):
    (x, y), _ = digits
    np.savez(tmp_path / "d.npz", x=x[:64], y=y[:64])
    onnx.save(mlp(64, [16], 10, seed=2), str(tmp_path / "m.onnx"))
    return tmp_path


def _train(cli_run, job, *args):
    return cli_run("train", *args, "--data", str(job / "d.npz"), "--quiet", "--threads", "1")


def _started(cli_run, job, *extra):
    result = _train(cli_run, job, str(job / "m.onnx"), "--out", str(job / "run"), "--epochs", "2", "--lr", "0.003",
                    "--batch-size", "16", "--seed", "4", *extra)
    assert result.exit_code == 0, result.output
    return json.loads((job / "run" / "metrics.json").read_text())


def test_resume_needs_neither_model_nor_options_and_continues_with_the_runs_settings(cli_run, job):
    _started(cli_run, job, "--epochs", "1")
    result = _train(cli_run, job, "--resume", "--out", str(job / "run"), "--epochs", "3")
    assert result.exit_code == 0, result.output
    doc = json.loads((job / "run" / "metrics.json").read_text())
    assert [h["epoch"] for h in doc["history"]] == [1, 2, 3]
    assert (doc["config"]["lr"], doc["config"]["batch_size"], doc["config"]["seed"]) == (0.003, 16, 4)
    assert "trained 3 epochs (12 steps)" in result.output  # 4 steps of 16 an epoch: the run's batch size


def test_options_given_again_must_agree_and_are_named(cli_run, job):
    _started(cli_run, job)
    before = (job / "run" / "checkpoint").read_bytes()
    result = _train(cli_run, job, "--resume", "--out", str(job / "run"), "--lr", "0.01", "--batch-size", "8", "--seed", "4")
    assert result.exit_code == 1
    assert result.output.strip() == (
        f"Error: --resume: the run in '{job / 'run'}' was started with lr=0.003, batch_size=16, now lr=0.01, "
        "batch_size=8; options given again must agree (leave them out to keep the run's), or use another --out")
    assert (job / "run" / "checkpoint").read_bytes() == before


def test_a_finished_run_says_nothing_was_done(cli_run, job):
    _started(cli_run, job)
    before = (job / "run" / "checkpoint").read_bytes()
    result = _train(cli_run, job, "--resume", "--out", str(job / "run"))
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0] == f"nothing was done: the run in '{job / 'run'}' already finished its 2 epochs"
    assert (job / "run" / "checkpoint").read_bytes() == before


def test_a_decaying_schedule_is_not_stretched_but_a_constant_one_continues(cli_run, job):
    _started(cli_run, job, "--schedule", "cosine")
    result = _train(cli_run, job, "--resume", "--out", str(job / "run"), "--epochs", "4")
    assert result.exit_code == 1
    assert result.output.strip() == (
        "Error: --resume: the run's cosine learning-rate schedule is laid out over its 2 epochs; --epochs 4 would "
        "change it for the steps already taken; resume with --epochs 2 or fewer, or start a new run")
    constant = job / "constant"
    assert _train(cli_run, job, str(job / "m.onnx"), "--out", str(constant), "--epochs", "2").exit_code == 0
    assert _train(cli_run, job, "--resume", "--out", str(constant), "--epochs", "4").exit_code == 0
    assert len(json.loads((constant / "metrics.json").read_text())["history"]) == 4


def test_errors_leave_no_folder_behind(cli_run, job):
    result = _train(cli_run, job, "--resume", "--out", str(job / "missing"))
    assert result.exit_code == 1
    assert result.output.strip() == (f"Error: --resume: run folder '{job / 'missing'}' does not exist, so it holds no "
                                     "run to continue; start the run without --resume")
    assert not (job / "missing").exists()
    bad = job / "bad.npz"
    np.savez(bad, x=np.zeros((4, 63), np.float32), y=np.zeros(4, np.int64))
    result = cli_run("train", str(job / "m.onnx"), "--data", str(bad), "--out", str(job / "new"), "--quiet")
    assert result.exit_code == 2
    assert not (job / "new").exists()


def test_model_may_be_left_out_only_with_resume_and_out(cli_run, job):
    result = _train(cli_run, job, "--out", str(job / "run"))
    assert result.exit_code == 2
    assert "Missing argument 'MODEL' (it may be left out only with --resume and --out)." in result.output


def test_ctrl_c_prints_the_command_that_resumes(cli_run, job, monkeypatch):
    real = epochs_module.learning_rate

    def interrupted_in_epoch_2(schedule, lr, step, total, warmup):
        if step == 6:
            raise KeyboardInterrupt
        return real(schedule, lr, step, total, warmup)

    monkeypatch.setattr(epochs_module, "learning_rate", interrupted_in_epoch_2)
    result = _train(cli_run, job, str(job / "m.onnx"), "--out", str(job / "run"), "--epochs", "3", "--batch-size", "16",
                    "--schedule", "linear")
    assert result.exit_code == 130
    assert result.output.strip().splitlines() == [
        "Interrupted; the last checkpoint is kept (saved every 30 s, at an epoch's end). Continue the run with:",
        f"  onnxforge train --resume --out {job / 'run'} --data {job / 'd.npz'}"]
    monkeypatch.undo()
    assert _train(cli_run, job, "--resume", "--out", str(job / "run")).exit_code == 0
    assert len(json.loads((job / "run" / "metrics.json").read_text())["history"]) == 3
