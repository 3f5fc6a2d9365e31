"""Ctrl-C (a real SIGINT to ``onnxforge train`` in a subprocess) saves the checkpoint of the step it
lands on, says which epoch and step it holds, and ``--resume`` continues from that step to the
weights of an uninterrupted run."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from onnxforge.graphs import mlp

STEPS_PER_EPOCH = 360  # 1437 examples in batches of 4
EPOCHS = 25


def _cmd(job, out, backend, *extra):
    return [sys.executable, "-m", "onnxforge.cli.main", "train", str(job / "m.onnx"), "--data", str(job / "train.npz"),
            "--epochs", str(EPOCHS), "--batch-size", "4", "--optimizer", "sgd", "--lr", "0.01", "--schedule", "cosine", "--seed", "3",
            "--threads", "1", "--quiet", "--backend", backend, "--out", str(out), "--checkpoint-every", "1h", *extra]


def _weights(rundir) -> dict:
    model = onnx.load(str(rundir / "model.onnx"))
    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}


def _properties(rundir, backend) -> dict:
    if backend == "onnx":
        with np.load(str(rundir / "checkpoint"), allow_pickle=False) as data:
            return json.loads(bytes(data["properties"]).decode())
    from onnxforge.runtime.ort.distribution import training_api

    _, _, api = training_api()
    return dict(api.CheckpointState.load_checkpoint(str(rundir / "checkpoint")).properties)


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["onnx", pytest.param("artifacts", marks=pytest.mark.artifacts)])
def test_ctrl_c_saves_the_current_step_and_resume_reaches_the_uninterrupted_weights(tmp_path, digits, backend):
    (x, y), _ = digits
    np.savez(tmp_path / "train.npz", x=x, y=y)
    onnx.save(mlp(64, [256, 256], 10, seed=2), str(tmp_path / "m.onnx"))
    run = tmp_path / "run"
    proc = subprocess.Popen(_cmd(tmp_path, run, backend), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (run / "checkpoint").is_file() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.5)  # training: the only checkpoint so far is the one before step 1 (--checkpoint-every 1h)
    assert proc.poll() is None, proc.communicate()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    said = re.search(r"Interrupted: saved the checkpoint at (?:epoch (\d+), after step (\d+) of its (\d+)|the end of "
                     r"epoch (\d+)) \(step (\d+) of the run\)", err)
    assert said, err
    assert f"onnxforge train --resume --out {run} --data {tmp_path / 'train.npz'}" in err
    props = _properties(run, backend)
    step = int(said.group(5))
    assert int(props["step"]) == step > 0
    if said.group(1):  # mid-epoch: the epoch in progress and how far it got
        epoch, within = int(said.group(1)), int(said.group(2))
        assert int(said.group(3)) == STEPS_PER_EPOCH
        assert int(props["epoch"]) == epoch - 1 and int(props["epoch_step"]) == within
        assert step == (epoch - 1) * STEPS_PER_EPOCH + within
    else:
        assert int(props["epoch"]) * STEPS_PER_EPOCH == step
    resumed = subprocess.run([sys.executable, "-m", "onnxforge.cli.main", "train", "--resume", "--out", str(run),
                              "--data", str(tmp_path / "train.npz"), "--threads", "1", "--quiet", "--json"],
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["steps"] == EPOCHS * STEPS_PER_EPOCH
    whole = tmp_path / "whole"
    subprocess.run(_cmd(tmp_path, whole, backend), check=True, capture_output=True, timeout=300)
    history = json.loads((run / "metrics.json").read_text())["history"]
    assert [h["epoch"] for h in history] == list(range(1, EPOCHS + 1))
    expected = _weights(whole)
    for name, value in _weights(run).items():
        np.testing.assert_allclose(value, expected[name], rtol=1e-5, atol=1e-6, err_msg=name)
