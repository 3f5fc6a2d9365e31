"""Data-parallel training on Ray Train (TorchTrainer, gloo) on a loopback-only local cluster of 2
CPUs: two workers with batch B hold, after 20 steps, the weights of one worker trained with batch
2B on the same examples (SGD and AdamW, within 1e-5); a worker killed mid-run (SIGKILL of rank 0,
found by the run folder's lock) is restarted from the checkpoint and the run ends on the weights
of an uninterrupted run. Each Ray Train start costs 25-35 s here, so these are slow."""

from __future__ import annotations

import json
import os
import signal
import threading
import time

import numpy as np
import pytest
import onnx

from onnxforge.graphs.mlp import mlp
from onnxforge.runtime import Trainer

ray = pytest.importorskip("ray")
pytest.importorskip("torch")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def local_ray():
    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False)
    yield ray


def _data(n=160, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 6)).astype(np.float32), rng.integers(0, 3, n).astype(np.int64)


def _max_diff(a: dict, b: dict) -> float:
    return max(float(np.abs(a[k] - b[k]).max()) for k in b)


@pytest.mark.parametrize("optimizer,lr", [("sgd", 0.05), ("adamw", 0.01)])
def test_two_workers_equal_one_worker_with_twice_the_batch(tmp_path, local_ray, optimizer, lr):
    from onnxforge.runtime.distributed.ray_train import RayTrain

    x, y = _data()  # 160 / (2 x 8) = 10 steps an epoch: 20 steps in 2 epochs
    model = mlp(6, [16, 8], 3, seed=3)
    two = Trainer(model, tmp_path / "two", optimizer=optimizer, lr=lr, workers=2, strategy=RayTrain(), progress=False)
    history = two.fit((x, y), epochs=2, batch_size=8)
    one = Trainer(model, tmp_path / "one", optimizer=optimizer, lr=lr, backend="onnx", progress=False)
    one.fit((x, y), epochs=2, batch_size=16)
    assert two.step == one.step == 20 and len(history) == 2
    assert _max_diff(two.parameters(), one.parameters()) <= 1e-5
    assert _max_diff(two.parameters(), Trainer(model, tmp_path / "x", progress=False).parameters()) > 1e-3  # it moved
    assert history[-1]["loss"] == pytest.approx(one.history[-1]["loss"], rel=1e-5)
    assert json.loads((tmp_path / "two" / "metrics.json").read_text())["config"]["batch_size"] == 16


def _kill_rank0_at_epoch(rundir, epoch: int, done: list):
    """SIGKILL the process holding the run folder's lock once metrics.json shows ``epoch``."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            history = json.loads((rundir / "metrics.json").read_text()).get("history", [])
            if len(history) >= epoch:
                pid = int((rundir / ".lock").read_text().strip())
                os.kill(pid, signal.SIGKILL)
                done.append(pid)
                return
        except (OSError, ValueError):
            pass
        time.sleep(0.05)


def test_a_killed_worker_resumes_to_the_uninterrupted_weights(tmp_path, local_ray):
    from onnxforge.runtime.distributed.ray_train import RayTrain

    x, y = _data(640)
    model = mlp(6, [16, 8], 3, seed=3)
    killed: list = []
    watcher = threading.Thread(target=_kill_rank0_at_epoch, args=(tmp_path / "run", 2, killed), daemon=True)
    watcher.start()
    run = Trainer(model, tmp_path / "run", optimizer="adamw", lr=0.01, workers=2, strategy=RayTrain(max_failures=2),
                  progress=False)
    run.fit((x, y), epochs=6, batch_size=8)
    watcher.join(5)
    assert killed, "the worker was not killed (the run ended first)"
    whole = Trainer(model, tmp_path / "whole", optimizer="adamw", lr=0.01, backend="onnx", progress=False)
    whole.fit((x, y), epochs=6, batch_size=16)
    assert run.epoch == 6 and run.step == whole.step
    assert _max_diff(run.parameters(), whole.parameters()) <= 1e-5


@pytest.mark.slow
def test_cli_with_a_relative_out_writes_there_and_reports_what_the_workers_did(tmp_path, local_ray, cli_run, monkeypatch):
    """Ray's workers run in its session folders: the driver makes --out and --data absolute, so the run
    folder lands where the user said and the summary counts the workers' epochs and steps."""
    x, y = _data()
    np.savez(tmp_path / "d.npz", x=x, y=y)
    onnx.save(mlp(6, [16, 8], 3, seed=3), str(tmp_path / "m.onnx"))
    monkeypatch.chdir(tmp_path)
    result = cli_run("train", "m.onnx", "--data", "d.npz", "--workers", 2, "--engine", "ray", "--epochs", 2,
                     "--batch-size", 8, "--out", "runs/x", "--quiet")
    assert result.exit_code == 0, result.output
    assert "trained 2 epochs (20 steps) on 2 Ray Train workers (global batch 16)" in result.output
    assert (tmp_path / "runs" / "x" / "checkpoint").is_file()
    assert len(json.loads((tmp_path / "runs" / "x" / "metrics.json").read_text())["history"]) == 2
    assert "\x1b[" not in result.output
