"""Training that loses nothing: ``kill -9`` at random moments, then ``--resume``, ends with the
weights of an uninterrupted run (on each backend: ONNX Runtime training's checkpoints and the onnx
backend's npz files); damaged checkpoints are refused; a diverging loss stops the run and keeps the
last good checkpoint."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

import onnxforge.runtime.training.checkpoint_file as checkpoint_file
import onnxforge.runtime.training.epochs as epochs_module  # the step loop (run_epoch) looks up learning_rate there
from onnxforge.graphs import mlp
from onnxforge.runtime import CheckpointError, Trainer, TrainingError

EPOCHS = 12


@pytest.fixture(scope="module")
def job(tmp_path_factory, digits):
    root = tmp_path_factory.mktemp("kill")
    (x, y), _ = digits
    np.savez(root / "train.npz", x=x[:320], y=y[:320])
    onnx.save(mlp(64, [128], 10, dropout=0.1, seed=3), str(root / "m.onnx"))
    return root


def _train_cmd(job, out, backend, *extra):
    return [sys.executable, "-m", "onnxforge.cli.main", "train", str(job / "m.onnx"), "--data", str(job / "train.npz"),
            "--epochs", str(EPOCHS), "--batch-size", "16", "--lr", "3e-3", "--schedule", "cosine", "--warmup-steps", "10",
            "--seed", "5", "--threads", "1", "--quiet", "--backend", backend, "--out", str(out),
            "--checkpoint-every", "1", *extra]  # kills land between epochs, each one saved


def _weights(rundir) -> dict:
    model = onnx.load(str(rundir / "model.onnx"))
    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}


def _epoch_on_disk(rundir, backend) -> int | None:
    """The epoch of the checkpoint a resume would start from (None: no checkpoint yet), read as each
    backend's format is read by its own library: ONNX Runtime training's, or numpy's npz."""
    if not (rundir / "checkpoint").is_file():
        return None
    if backend == "onnx":
        with np.load(str(rundir / "checkpoint"), allow_pickle=False) as data:
            return int(json.loads(bytes(data["properties"]).decode())["epoch"])
    from onnxforge.runtime.ort.distribution import training_api

    _, _, api = training_api()
    return int(api.CheckpointState.load_checkpoint(str(rundir / "checkpoint")).properties["epoch"])


def _epochs_done(rundir) -> int | None:
    """Epochs recorded in metrics.json (written atomically after each checkpoint)."""
    try:
        return len(json.loads((rundir / "metrics.json").read_text())["history"])
    except (OSError, ValueError, KeyError):
        return None


def _wait(proc, reached, then: float, timeout: float = 300) -> None:
    """Wait until ``reached()`` (or the process ends), then ``then`` seconds more (or its end)."""
    deadline = time.monotonic() + timeout
    while proc.poll() is None and not reached() and time.monotonic() < deadline:
        time.sleep(0.002)
    try:
        proc.wait(timeout=then)
    except subprocess.TimeoutExpired:
        pass


@pytest.mark.slow
def test_kill_minus_nine_at_random_moments_then_resume_matches_uninterrupted(job, training_backend):
    runs = job / training_backend
    reference = runs / "reference"
    t0 = time.perf_counter()
    proc = subprocess.Popen(_train_cmd(job, reference, training_backend), stderr=subprocess.PIPE)
    while not (reference / "checkpoint").exists() and proc.poll() is None:
        time.sleep(0.005)
    first_checkpoint = time.perf_counter() - t0
    assert proc.wait(timeout=300) == 0, proc.stderr.read().decode()
    total = time.perf_counter() - t0
    expected = _weights(reference)

    rng = np.random.default_rng(2024)
    epoch_s = max((total - first_checkpoint) / EPOCHS, 0.01)
    resumed_from = []  # the epoch each resume started from
    for run in range(8):
        out = runs / f"run{run}"
        args: list[str] = []
        kills = 0
        for attempt in range(8):  # up to 3 kills; a restart after a kill in start-up is one more attempt
            proc = subprocess.Popen(_train_cmd(job, out, training_backend, *args), stderr=subprocess.PIPE)
            if kills < 3:
                # kills are placed by progress, not by the clock, so that a loaded machine moves them
                # with the run: the first of run 0 anywhere in start-up; the others once the run has
                # reached a drawn epoch, plus a random part of an epoch (steps, saves, exports)
                if run == 0 and attempt == 0:
                    _wait(proc, lambda: True, rng.uniform(0.05, max(first_checkpoint, 0.1)))
                else:
                    target = int(rng.integers(0, EPOCHS - 1))
                    _wait(proc, lambda: (_epochs_done(out) or 0) >= target, rng.uniform(0, epoch_s))  # noqa: B023 - called now
            if kills < 3 and proc.poll() is None:
                proc.kill()  # SIGKILL: no handler runs, files stay as the moment left them
                proc.wait()
                kills += 1
                args = ["--resume"]
                resumed_from.append(_epoch_on_disk(out, training_backend))
                continue
            rc = proc.wait(timeout=300)
            err = proc.stderr.read().decode()
            if rc == 1 and ("stopped before its first checkpoint" in err or "holds no run to continue" in err):
                args = ["--overwrite"]  # killed during start-up: nothing to resume, the run starts again
                continue
            assert rc == 0, err
            break
        else:
            pytest.fail(f"run {run} did not finish")
        got = _weights(out)
        for name, value in expected.items():
            np.testing.assert_allclose(got[name], value, rtol=0, atol=1e-6, err_msg=f"run {run}: {name}")
        history = json.loads((out / "metrics.json").read_text())["history"]
        assert [h["epoch"] for h in history] == list(range(1, EPOCHS + 1))
    # the kills really landed inside runs: resumes started from several different epochs
    assert len({e for e in resumed_from if e is not None}) >= 3, resumed_from


def _trainer(path, **kw):
    return Trainer(mlp(64, [32], 10, seed=1), path, lr=2e-3, device="cpu", seed=7, progress=False,
                   checkpoint_every=kw.pop("checkpoint_every", 1), **kw)


def test_a_kill_between_writing_and_renaming_a_checkpoint_loses_nothing(tmp_path, digits, monkeypatch):
    (x, y), _ = digits
    data = (x[:200], y[:200])
    full = _trainer(tmp_path / "full")
    full.fit(data, epochs=3, batch_size=32)

    real_replace, calls = checkpoint_file.os.replace, []

    class Killed(BaseException):
        pass

    def dying_replace(src, dst):  # os.replace of every module: count the checkpoint's own renames
        calls.extend([dst] if str(dst).endswith("/checkpoint") else [])
        if len(calls) == 3 and str(dst).endswith("/checkpoint"):  # epoch 0 and epoch 1 saved; epoch 2's new file written, then "kill -9"
            raise Killed
        return real_replace(src, dst)

    monkeypatch.setattr(checkpoint_file.os, "replace", dying_replace)
    with pytest.raises(Killed):
        _trainer(tmp_path / "split").fit(data, epochs=3, batch_size=32)
    monkeypatch.setattr(checkpoint_file.os, "replace", real_replace)
    run = tmp_path / "split"
    assert not list(run.glob(".checkpoint.*tmp"))  # the save's private folder went with its exception
    assert len((run / "checkpoint.sha256").read_text().split()) == 2  # old and new digests both accepted
    resumed = _trainer(run)
    resumed.fit(data, epochs=3, batch_size=32, resume=True)
    assert [h["epoch"] for h in resumed.history] == [1, 2, 3]
    for name, value in full.parameters().items():
        np.testing.assert_allclose(resumed.parameters()[name], value, rtol=0, atol=1e-6, err_msg=name)
    assert len((run / "checkpoint.sha256").read_text().split()) == 1


@pytest.mark.parametrize("damage", ["flip", "truncate", "empty", "garbage"])
def test_a_damaged_checkpoint_is_an_error_never_a_fresh_start(cli_run, tmp_path, digits, damage):
    (x, y), _ = digits
    run = tmp_path / "run"
    _trainer(run).fit((x[:64], y[:64]), epochs=2, batch_size=32)
    path = run / "checkpoint"
    raw = bytearray(path.read_bytes())
    if damage == "flip":
        raw[len(raw) // 2] ^= 0x01  # one bit inside the weights: only the digest can tell
    elif damage == "truncate":
        raw = raw[: len(raw) // 2]
    elif damage == "empty":
        raw = bytearray()
    else:
        raw = bytearray(np.random.default_rng(0).integers(0, 256, len(raw), dtype=np.uint8).tobytes())
    path.write_bytes(bytes(raw))
    result = cli_run("train", str(tmp_path / "m.onnx"), "--data", "unused.npz")  # usage sanity
    assert result.exit_code != 0
    with pytest.raises(CheckpointError, match="checkpoint '.*checkpoint' is corrupt: its SHA-256 matches none recorded"):
        _trainer(run).fit((x[:64], y[:64]), epochs=3, batch_size=32, resume=True)
    assert path.read_bytes() == bytes(raw)  # left as found for the user to inspect
    assert json.loads((run / "metrics.json").read_text())["history"][-1]["epoch"] == 2


def test_a_checkpoint_without_digests_is_refused_unless_trusted_then_format_checked(tmp_path, digits):
    (x, y), _ = digits
    run = tmp_path / "run"
    _trainer(run).fit((x[:64], y[:64]), epochs=1, batch_size=32)
    (run / "checkpoint.sha256").unlink()
    good = (run / "checkpoint").read_bytes()
    (run / "checkpoint").write_bytes(b"\x00" * 64)
    with pytest.raises(CheckpointError, match=r"^checkpoint '.*checkpoint' has no digest record \('checkpoint.sha256' "
                                              r"is missing or empty\), so it cannot be told from a damaged one; restore "
                                              r"the record, or pass --trust-checkpoint to resume from it anyway$"):
        _trainer(run).fit((x[:64], y[:64]), epochs=2, batch_size=32, resume=True)
    with pytest.raises(CheckpointError, match="could not be read"):
        _trainer(run, trust_checkpoint=True).fit((x[:64], y[:64]), epochs=2, batch_size=32, resume=True)
    (run / "checkpoint").write_bytes(good)  # an intact one without its record: resumed only when trusted
    resumed = _trainer(run, trust_checkpoint=True)
    resumed.fit((x[:64], y[:64]), epochs=2, batch_size=32, resume=True)
    assert resumed.epoch == 2 and len((run / "checkpoint.sha256").read_text().split()) == 1


def test_a_checkpoint_exists_before_the_first_step(tmp_path, digits, monkeypatch):
    (x, y), _ = digits
    seen = []

    def first_step_dies(*a, **k):
        seen.append((tmp_path / "run" / "checkpoint").is_file())
        raise KeyboardInterrupt

    trainer = _trainer(tmp_path / "run")
    monkeypatch.setattr(epochs_module, "learning_rate", first_step_dies)
    with pytest.raises(KeyboardInterrupt):
        trainer.fit((x[:64], y[:64]), epochs=1, batch_size=32)
    monkeypatch.undo()
    assert seen == [True]
    resumed = _trainer(tmp_path / "run")
    resumed.fit((x[:64], y[:64]), epochs=1, batch_size=32, resume=True)
    assert resumed.step == 2


def test_a_diverging_loss_stops_the_run_and_keeps_the_last_good_checkpoint(cli_run, tmp_path, digits, monkeypatch,
                                                                          training_backend):
    (x, y), _ = digits
    np.savez(tmp_path / "d.npz", x=x[:64], y=y[:64])
    onnx.save(mlp(64, [32], 10, seed=1), str(tmp_path / "m.onnx"))
    real = epochs_module.learning_rate

    def explode_in_epoch_3(schedule, lr, step, total, warmup):
        return 1e30 if step >= 4 else real(schedule, lr, step, total, warmup)  # 2 steps an epoch

    monkeypatch.setattr(epochs_module, "learning_rate", explode_in_epoch_3)
    run = tmp_path / "run"
    result = cli_run("train", str(tmp_path / "m.onnx"), "--data", str(tmp_path / "d.npz"),
                     "--epochs", "5", "--optimizer", "sgd", "--schedule", "linear", "--quiet",
                     "--checkpoint-every", "1", "--backend", training_backend, "--out", str(run))
    assert result.exit_code == 1, result.output
    line = result.output.strip().splitlines()[-1]
    assert line.startswith("Error: training diverged: the loss became ") and "at epoch 3, step 6" in line
    assert line.endswith("The last good checkpoint is kept.")
    assert _epoch_on_disk(run, training_backend) == 2
    checkpoint_file.verify_checkpoint(run / "checkpoint")
    assert [h["epoch"] for h in json.loads((run / "metrics.json").read_text())["history"]] == [1, 2]
    assert np.all(np.isfinite(np.concatenate([v.ravel() for v in _weights(run).values()])))
    with pytest.raises(TrainingError):
        tr = Trainer(str(tmp_path / "m.onnx"), tmp_path / "run2", optimizer="sgd", schedule="linear", device="cpu",
                     backend=training_backend, progress=False)
        tr.fit(str(tmp_path / "d.npz"), epochs=5)
