"""``kill -9`` at random moments of ``onnxforge train --backend onnx``, then ``--resume``: the run
ends on the weights of an uninterrupted one (the pattern of test_kill_resume.py, on the npz
checkpoints of the onnx backend)."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from onnxforge.graphs import mlp

EPOCHS = 20


def _cmd(root, out, *extra):
    return [sys.executable, "-m", "onnxforge.cli.main", "train", str(root / "m.onnx"), "--data", str(root / "train.npz"),
            "--epochs", str(EPOCHS), "--batch-size", "16", "--lr", "3e-3", "--schedule", "cosine", "--warmup-steps", "10",
            "--seed", "5", "--threads", "1", "--quiet", "--backend", "onnx", "--out", str(out),
            "--checkpoint-every", "1", *extra]  # kills land between epochs, each one saved


def _weights(rundir) -> dict:
    return {t.name: numpy_helper.to_array(t) for t in onnx.load(str(rundir / "model.onnx")).graph.initializer}


def _epochs_done(rundir) -> int:
    """Epochs recorded in metrics.json (written atomically after each checkpoint)."""
    try:
        return len(json.loads((rundir / "metrics.json").read_text())["history"])
    except (OSError, ValueError, KeyError):
        return 0


def _epoch_on_disk(rundir) -> int | None:
    try:
        with np.load(str(rundir / "checkpoint"), allow_pickle=False) as data:
            return int(json.loads(bytes(data["properties"]).decode())["epoch"])
    except (OSError, KeyError, ValueError):
        return None


@pytest.mark.slow
def test_kill_minus_nine_then_resume_matches_uninterrupted(tmp_path, digits):
    (x, y), _ = digits
    np.savez(tmp_path / "train.npz", x=x[:320], y=y[:320])
    onnx.save(mlp(64, [128], 10, dropout=0.1, seed=3), str(tmp_path / "m.onnx"))
    reference = tmp_path / "reference"
    t0 = time.perf_counter()
    proc = subprocess.Popen(_cmd(tmp_path, reference), stderr=subprocess.PIPE)
    while not (reference / "checkpoint").exists() and proc.poll() is None:
        time.sleep(0.005)
    first = time.perf_counter() - t0
    assert proc.wait(timeout=300) == 0, proc.stderr.read().decode()
    total = time.perf_counter() - t0
    expected = _weights(reference)
    rng = np.random.default_rng(7)
    epoch_s = max((total - first) / EPOCHS, 0.01)
    resumed_from = []
    for run in range(4):
        out, args, kills = tmp_path / f"run{run}", [], 0
        for _attempt in range(8):
            proc = subprocess.Popen(_cmd(tmp_path, out, *args), stderr=subprocess.PIPE)
            if kills < 2:
                # placed by the run's progress, not by the clock, so a loaded machine moves the kill
                # with the run: once a drawn epoch is on disk, plus a random part of an epoch
                done, deadline = _epochs_done(out), time.monotonic() + 300
                target = int(rng.integers(done + 1, EPOCHS)) if done + 1 < EPOCHS else EPOCHS
                while proc.poll() is None and _epochs_done(out) < target and time.monotonic() < deadline:
                    time.sleep(0.002)
                try:
                    proc.wait(timeout=rng.uniform(0, epoch_s))
                except subprocess.TimeoutExpired:
                    pass
            if kills < 2 and proc.poll() is None:
                proc.kill()  # SIGKILL: no handler runs
                proc.wait()
                kills += 1
                args = ["--resume"]
                resumed_from.append(_epoch_on_disk(out))
                continue
            rc = proc.wait(timeout=300)
            err = proc.stderr.read().decode()
            if rc == 1 and ("stopped before its first checkpoint" in err or "holds no run to continue" in err):
                args = ["--overwrite"]
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
    assert len([e for e in resumed_from if e is not None]) >= 2, resumed_from  # kills landed mid-run
