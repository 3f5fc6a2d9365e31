"""Train-while-serve: a run folder served with --watch while `onnxforge train --resume` trains it
on new data in another process; a worse epoch is never swapped in."""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from onnxforge.graphs import mlp
from onnxforge.runtime.modelio.files import atomic_write_bytes, save_model, set_metadata

TRAIN = [sys.executable, "-c", "from onnxforge.cli.main import main; main()", "train"]


def _labels(x, w):
    return (x @ w).argmax(1).astype(np.int64)


def _predict(conn, name, x) -> np.ndarray:
    body = json.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": list(x.shape), "data": x.ravel().tolist()}]})
    conn.request("POST", f"/v2/models/{name}/infer", body=body)
    response = conn.getresponse()
    data = response.read()
    assert response.status == 200, data[:200]
    out = json.loads(data)["outputs"][0]
    return np.array(out["data"], np.float32).reshape(out["shape"])


def _served(conn, name) -> dict:
    conn.request("GET", f"/v2/models/{name}")
    response = conn.getresponse()
    return json.loads(response.read()).get("parameters", {})


def test_a_run_trained_while_served_raises_served_accuracy(tmp_path, start_server):
    rng = np.random.default_rng(0)
    w = rng.standard_normal((8, 3))
    few, new, held = (rng.standard_normal((n, 8)).astype(np.float32) for n in (64, 4000, 600))
    np.savez(tmp_path / "few.npz", x=few, y=_labels(few, w))
    np.savez(tmp_path / "new.npz", x=new, y=_labels(new, w))
    np.savez(tmp_path / "val.npz", x=held[:300], y=_labels(held[:300], w))
    test_x, test_y = held[300:], _labels(held[300:], w)  # held out from training and validation
    save_model(mlp(8, [16], 3, seed=1), tmp_path / "base.onnx")
    run = tmp_path / "run"
    first = [*TRAIN, str(tmp_path / "base.onnx"), "--data", str(tmp_path / "few.npz"), "--val", str(tmp_path / "val.npz"),
             "--epochs", "1", "--out", str(run), "--quiet", "--threads", "1"]
    subprocess.run(first, check=True, capture_output=True, timeout=120)
    srv = start_server([run], watch=True, watch_interval_s=0.05, max_concurrency=1)
    host, port = srv.address[0], srv.address[1]
    conn = http.client.HTTPConnection(host, port, timeout=30)
    before = float((_predict(conn, "run", test_x).argmax(1) == test_y).mean())
    assert _served(conn, "run")["epoch"] == 1

    stop, failures, answered = threading.Event(), [], []

    def client():
        c = http.client.HTTPConnection(host, port, timeout=30)
        try:
            for _ in range(100_000):
                if stop.is_set():
                    return
                _predict(c, "run", test_x[:4])
                answered.append(1)
        except Exception as exc:  # noqa: BLE001
            failures.append(repr(exc))

    clients = [threading.Thread(target=client, daemon=True) for _ in range(4)]
    for t in clients:
        t.start()
    resume = [*TRAIN, "--resume", "--out", str(run), "--data", str(tmp_path / "new.npz"), "--val",
              str(tmp_path / "val.npz"), "--epochs", "25", "--quiet", "--threads", "1"]
    trainer = subprocess.Popen(resume, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    seen = []
    try:
        deadline = time.monotonic() + 180
        while trainer.poll() is None and time.monotonic() < deadline:
            seen.append(_served(conn, "run"))
            time.sleep(0.02)
        assert trainer.wait(timeout=60) == 0, trainer.stderr.read().decode()[-2000:]
        time.sleep(0.5)  # a few more looks at the finished run
        seen.append(_served(conn, "run"))
    finally:
        stop.set()
        for t in clients:
            t.join(timeout=60)
        if trainer.poll() is None:
            trainer.kill()
    after = float((_predict(conn, "run", test_x).argmax(1) == test_y).mean())
    assert not failures, failures[:3]
    assert len(answered) > 20
    assert after > before + 0.15, (before, after)
    history = {r["epoch"]: r["val_accuracy"] for r in json.loads((run / "metrics.json").read_text())["history"]}
    epochs = [s["epoch"] for s in seen]
    assert epochs == sorted(epochs) and epochs[-1] > 1
    for s in seen:  # what the server says it serves is that epoch's own record
        assert s["metric"] == "val_accuracy" and s["value"] == pytest.approx(history[s["epoch"]])
    values = [s["value"] for s in seen]
    assert values == sorted(values), "a worse epoch was swapped in"


def _write_epoch(run, seed, epoch, history, metrics_first=False):
    model = set_metadata(mlp(8, [4], 3, seed=seed), {"trained": {"epochs": epoch}})

    def metrics():
        atomic_write_bytes(run / "metrics.json", json.dumps({"history": history}).encode())

    if metrics_first:
        metrics()
    tmp = run / "model.tmp"
    save_model(model, tmp)
    tmp.replace(run / "model.onnx")
    if not metrics_first:
        time.sleep(0.3)  # the server looks while metrics.json lags behind: it must wait
        metrics()


def _wait_epoch(srv, epoch, seconds=20):
    deadline = time.monotonic() + seconds
    while srv.repository.get("run").parameters.get("epoch") != epoch:
        assert time.monotonic() < deadline, f"epoch {epoch} not served"
        time.sleep(0.05)


def test_a_worse_epoch_is_never_swapped_in(tmp_path, start_server, caplog):
    run = tmp_path / "run"
    run.mkdir()
    history = [{"epoch": 1, "val_accuracy": 0.80}]
    _write_epoch(run, 1, 1, history, metrics_first=True)
    srv = start_server([run], watch=True, watch_interval_s=0.05)
    assert srv.repository.get("run").parameters == {"epoch": 1, "metric": "val_accuracy", "value": 0.80}
    history.append({"epoch": 2, "val_accuracy": 0.85})
    _write_epoch(run, 2, 2, history)
    _wait_epoch(srv, 2)
    with caplog.at_level("INFO", logger="onnxforge.serve"):
        history.append({"epoch": 3, "val_accuracy": 0.70})
        _write_epoch(run, 3, 3, history)
        deadline = time.monotonic() + 20
        while not any("epoch 3 has val_accuracy 0.7, worse" in r.getMessage() for r in caplog.records):
            assert time.monotonic() < deadline, [r.getMessage() for r in caplog.records]
            time.sleep(0.05)
    assert srv.repository.get("run").parameters["epoch"] == 2
    history.append({"epoch": 4, "val_accuracy": 0.85})  # no worse: served
    _write_epoch(run, 4, 4, history)
    _wait_epoch(srv, 4)
    conn = http.client.HTTPConnection(srv.address[0], srv.address[1], timeout=30)
    assert _served(conn, "run") == {"epoch": 4, "metric": "val_accuracy", "value": 0.85}
