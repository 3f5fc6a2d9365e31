"""serve --watch: the served file is replaced while 16 clients send without pause; nothing fails,
every answer is one of the models' own outputs, and a broken file never serves."""

from __future__ import annotations

import http.client
import json
import os
import threading
import time

import numpy as np
import pytest

from onnxforge.graphs import mlp
from onnxforge.runtime import load
from onnxforge.runtime.modelio.files import save_model

CLIENTS = 16
SWAPS = 10


def _infer(conn, x) -> np.ndarray:
    body = json.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": list(x.shape), "data": x.ravel().tolist()}]})
    conn.request("POST", "/v2/models/m/infer", body=body, headers={"Content-Type": "application/json"})
    response = conn.getresponse()
    data = response.read()
    if response.status != 200:
        raise AssertionError(f"HTTP {response.status}: {data[:200]!r}")
    return np.array(json.loads(data)["outputs"][0]["data"], np.float32)


def _replace(path, source) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(source.read_bytes())
    os.replace(tmp, path)


def _wait_for(url_conn_factory, x, want, seconds=20.0) -> None:
    conn = url_conn_factory()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if np.array_equal(_infer(conn, x), want):
            return
        time.sleep(0.02)
    raise AssertionError("the new model was not swapped in within 20 s")


def test_replacing_the_served_file_under_load(tmp_path, start_server, caplog):
    variants = []
    for seed in range(SWAPS + 1):
        path = tmp_path / f"variant{seed}.onnx"
        save_model(mlp(64, [32], 10, seed=100 + seed), path)
        variants.append(path)
    x = np.random.default_rng(0).standard_normal((1, 64)).astype(np.float32)
    outputs = [load(p, device="cpu").run({"x": x})["logits"].ravel() for p in variants]
    assert all(not np.array_equal(outputs[0], o) for o in outputs[1:])
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(variants[1].read_bytes()[: 300])  # a half-written file
    served = tmp_path / "repo" / "m.onnx"
    served.parent.mkdir()
    _replace(served, variants[0])
    srv = start_server([served.parent], watch=True, watch_interval_s=0.05, max_concurrency=2)
    host, port = srv.address[0], srv.address[1]

    def connect():
        return http.client.HTTPConnection(host, port, timeout=30)

    stop = threading.Event()
    answers, failures = [], []

    def client():
        conn = connect()
        try:
            for _ in range(100_000):  # bounded; stops once the swaps are done
                if stop.is_set():
                    return
                answers.append(_infer(conn, x))
        except Exception as exc:  # noqa: BLE001 - every failure is reported below
            failures.append(repr(exc))
        finally:
            conn.close()

    threads = [threading.Thread(target=client, daemon=True) for _ in range(CLIENTS)]
    for t in threads:
        t.start()
    try:
        for i in range(1, SWAPS + 1):
            _replace(served, variants[i])
            _wait_for(connect, x, outputs[i])
            if i == 5:
                with caplog.at_level("WARNING", logger="onnxforge.serve"):
                    _replace(served, broken)
                    time.sleep(0.6)  # a dozen looks at the broken file
                conn = connect()
                for _ in range(20):
                    np.testing.assert_array_equal(_infer(conn, x), outputs[5])  # the old model still serves
                refused = [r for r in caplog.records if "not swapped in" in r.getMessage()]
                assert len(refused) == 1, [r.getMessage() for r in refused]
                assert "m" in refused[0].getMessage()
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=60)
    assert not failures, failures[:3]
    assert len(answers) > 100
    for got in answers:
        assert any(np.array_equal(got, o) for o in outputs), "an answer that no model gives"
    text = srv.metrics.render().decode()
    assert f'onnxforge_model_swaps_total{{model="m"}} {SWAPS}.0' in text
    assert 'onnxforge_model_loads_total{model="m",outcome="refused"} 1.0' in text


def test_a_changed_signature_becomes_a_new_version(tmp_path, start_server):
    repo = tmp_path / "repo"
    repo.mkdir()
    save_model(mlp(64, [32], 10, seed=1), repo / "m.onnx")
    srv = start_server([repo], watch=True, watch_interval_s=0.05)
    tmp = tmp_path / "new.onnx"
    save_model(mlp(8, [4], 3, seed=2), tmp)
    os.replace(tmp, repo / "m.onnx")
    deadline = time.monotonic() + 20
    while "2" not in srv.repository.metadata(srv.repository.get("m"))["versions"]:
        assert time.monotonic() < deadline, "no new version"
        time.sleep(0.05)
    assert srv.repository.get("m").session.inputs[0].shape[1] == 8
    assert srv.repository.get("m", "1").session.inputs[0].shape[1] == 64  # pinned clients keep theirs


@pytest.mark.parametrize("layout", ["triton"])
def test_a_triton_version_folder_must_keep_its_signature(tmp_path, start_server, layout, caplog):
    folder = tmp_path / "repo" / "m" / "1"
    folder.mkdir(parents=True)
    save_model(mlp(64, [32], 10, seed=1), folder / "model.onnx")
    srv = start_server([tmp_path / "repo"], watch=True, watch_interval_s=0.05)
    before = srv.repository.get("m").session
    with caplog.at_level("WARNING", logger="onnxforge.serve"):
        tmp = tmp_path / "new.onnx"
        save_model(mlp(8, [4], 3, seed=2), tmp)
        os.replace(tmp, folder / "model.onnx")
        deadline = time.monotonic() + 20
        while not any("new version folder" in r.getMessage() for r in caplog.records):
            assert time.monotonic() < deadline, "the change was not refused"
            time.sleep(0.05)
    assert srv.repository.get("m").session is before
