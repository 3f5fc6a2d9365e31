"""A model that never finishes never holds the server: its warm-up is refused past
--warmup-timeout (at start, on load, on a --watch swap) and later swaps still happen; with
--no-warmup its first request run is stopped and answered 504 while health answers; a run still
going at shutdown is stopped, so stop() (SIGTERM's path) returns."""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest
from _http import get, post
from onnx import TensorProto, helper, numpy_helper

from onnxforge.graphs import mlp
from onnxforge.runtime.errors import RunTimeoutError
from onnxforge.runtime.modelio.files import save_model
from onnxforge.runtime.server.app import Server, ServerConfig

JSON = {"Content-Type": "application/json"}


def stuck_model(trips: int = 10**15):
    """x [N, 4] -> x + trips, one trip at a time: a Loop that does not end in any useful time."""
    body = helper.make_graph(
        [helper.make_node("Identity", ["c_in"], ["c_out"]), helper.make_node("Add", ["v_in", "one"], ["v_out"])], "body",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []), helper.make_tensor_value_info("c_in", TensorProto.BOOL, []),
         helper.make_tensor_value_info("v_in", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("c_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("v_out", TensorProto.FLOAT, ["N", 4])],
        [numpy_helper.from_array(np.ones(1, np.float32), "one")])
    graph = helper.make_graph(
        [helper.make_node("Loop", ["trips", "cond", "x"], ["y"], body=body)], "stuck",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])],
        [numpy_helper.from_array(np.array(trips, np.int64), "trips"), numpy_helper.from_array(np.array(True), "cond")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def good_model(seed: int):
    return mlp(4, [3], 4, seed=seed)  # x [N, 4] -> logits [N, 4]


def infer_body(rows: int = 1) -> bytes:
    return json.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": [rows, 4], "data": [0.5] * 4 * rows}]}).encode()


def test_a_warm_up_that_never_ends_stops_the_start_in_one_line(tmp_path):
    save_model(stuck_model(), tmp_path / "stuck.onnx")
    start = time.perf_counter()
    with pytest.raises(RunTimeoutError, match=r"^model 'stuck': its warm-up \(one run on zeros\) did not end within 1 s "
                                              r"\(--warmup-timeout\)"):
        Server([tmp_path / "stuck.onnx"], ServerConfig(port=0, device="cpu", warmup_timeout_s=1))
    assert time.perf_counter() - start < 10


def test_a_stuck_model_is_refused_on_load_and_later_loads_still_happen(tmp_path, start_server):
    folder = tmp_path / "repo"
    folder.mkdir()
    save_model(good_model(1), folder / "m.onnx")
    srv = start_server([folder], warmup_timeout_s=1, repository_control=True)
    before = json.loads(post(srv.url, "/v2/models/m/infer", infer_body(), JSON)[2])["outputs"][0]["data"]
    save_model(stuck_model(), folder / "m.onnx")
    start = time.perf_counter()
    status, _, answer = post(srv.url, "/v2/repository/models/m/load", b"")
    assert status >= 500 and "did not end within 1 s (--warmup-timeout)" in json.loads(answer)["error"]
    assert time.perf_counter() - start < 10
    assert json.loads(post(srv.url, "/v2/models/m/infer", infer_body(), JSON)[2])["outputs"][0]["data"] == before
    save_model(good_model(2), folder / "m.onnx")
    assert post(srv.url, "/v2/repository/models/m/load", b"")[0] == 200
    after = json.loads(post(srv.url, "/v2/models/m/infer", infer_body(), JSON)[2])["outputs"][0]["data"]
    assert after != before


def test_watch_skips_a_stuck_model_and_takes_the_next_file(tmp_path, start_server):
    folder = tmp_path / "repo"
    folder.mkdir()
    save_model(good_model(1), folder / "m.onnx")
    srv = start_server([folder], warmup_timeout_s=1, watch=True, watch_interval_s=0.2)
    before = json.loads(post(srv.url, "/v2/models/m/infer", infer_body(), JSON)[2])["outputs"][0]["data"]
    save_model(stuck_model(), folder / "m.onnx")
    time.sleep(3.5)  # looked at twice, warmed up for 1 s, refused
    save_model(good_model(2), folder / "m.onnx")
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        after = json.loads(post(srv.url, "/v2/models/m/infer", infer_body(), JSON)[2])["outputs"][0]["data"]
        if after != before:
            break
        time.sleep(0.2)
    assert after != before, "the good file after the stuck one was never swapped in"


def test_without_warm_up_a_stuck_first_run_is_stopped_and_answered_504(tmp_path, start_server):
    save_model(stuck_model(), tmp_path / "stuck.onnx")
    srv = start_server([tmp_path / "stuck.onnx"], warmup=False, warmup_timeout_s=1)
    answers = {}
    worker = threading.Thread(target=lambda: answers.setdefault("r", post(srv.url, "/v2/models/stuck/infer",
                                                                          infer_body(), JSON)))
    worker.start()
    time.sleep(0.3)
    start = time.perf_counter()
    assert get(srv.url, "/v2/health/live")[0] == 200
    assert time.perf_counter() - start < 1
    worker.join(20)
    status, _, answer = answers["r"]
    assert status == 504 and "first run (--warmup-timeout) did not end within 1 s" in json.loads(answer)["error"]


def test_stop_returns_while_a_run_never_ends(tmp_path):
    save_model(stuck_model(), tmp_path / "stuck.onnx")
    srv = Server([tmp_path / "stuck.onnx"], ServerConfig(port=0, device="cpu", warmup=False, warmup_timeout_s=600,
                                                         shutdown_timeout_s=1))
    srv.start()
    worker = threading.Thread(target=lambda: _quietly(post, srv.url, "/v2/models/stuck/infer", infer_body(), JSON),
                              daemon=True)
    worker.start()
    time.sleep(0.5)
    start = time.perf_counter()
    srv.stop()
    assert time.perf_counter() - start < 15
    assert not srv.scheduler.runs._active  # the run was stopped, not left behind


def _quietly(fn, *args):
    try:
        fn(*args)
    except OSError:
        pass


def stuck_image_model():
    """A classifier of 2x2 grey images whose Loop does not end: its card reads encoded images."""
    from onnxforge.runtime.modelio.files import set_metadata

    loop = stuck_model()
    body = loop.graph.node[0].attribute[0].g
    for value in list(body.input)[2:] + list(body.output)[1:]:
        value.type.tensor_type.shape.Clear()
    nodes = [helper.make_node("Loop", ["trips", "cond", "x"], ["looped"], body=body),
             helper.make_node("ReduceSum", ["looped", "axes"], ["total"], keepdims=0),
             helper.make_node("Unsqueeze", ["total", "one_axis"], ["column"]),
             helper.make_node("MatMul", ["column", "w"], ["logits"])]
    graph = helper.make_graph(nodes, "stuck_image", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 2, 2])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 2])],
                              list(loop.graph.initializer) + [
                                  numpy_helper.from_array(np.array([1, 2, 3], np.int64), "axes"),
                                  numpy_helper.from_array(np.array([1], np.int64), "one_axis"),
                                  numpy_helper.from_array(np.ones((1, 2), np.float32), "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    card = {"task": "classification", "labels": ["a", "b"],
            "image": {"channels": 1, "height": 2, "width": 2, "resize": "refuse"}}
    return set_metadata(model, card)


def test_raw_inputs_run_under_the_same_deadlines(tmp_path, start_server):
    import io
    import struct as _struct

    from PIL import Image

    save_model(stuck_image_model(), tmp_path / "img.onnx")
    srv = start_server([tmp_path / "img.onnx"], warmup=False, warmup_timeout_s=1)
    png = io.BytesIO()
    Image.fromarray(np.zeros((2, 2), np.uint8), "L").save(png, format="PNG")
    data = _struct.pack("<I", len(png.getvalue())) + png.getvalue()
    header = json.dumps({"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1],
                                     "parameters": {"binary_data_size": len(data)}}]}).encode()
    start = time.perf_counter()
    status, _, answer = post(srv.url, "/v2/models/img/infer", header + data,
                             {"Inference-Header-Content-Length": str(len(header)), "Content-Type": "application/octet-stream"})
    assert status == 504 and "did not end within 1 s" in json.loads(answer)["error"]
    assert time.perf_counter() - start < 15


@pytest.mark.slow
def test_sigterm_ends_the_process_while_a_run_never_ends(tmp_path):
    import signal
    import subprocess
    import sys

    save_model(stuck_model(), tmp_path / "stuck.onnx")
    proc = subprocess.Popen([sys.executable, "-m", "onnxforge.cli.main", "serve", str(tmp_path / "stuck.onnx"), "--port", "0",
                             "--device", "cpu", "--no-warmup", "--warmup-timeout", "600", "--shutdown-timeout", "1"],
                            stderr=subprocess.PIPE, text=True)
    killer = threading.Timer(120, proc.kill)
    killer.start()
    try:
        line = ""
        while not line.startswith("Serving"):
            line = proc.stderr.readline()
            assert line, "the server exited before listening"
        url = line.split(" on ", 1)[1].split(" ", 1)[0]
        threading.Thread(target=lambda: _quietly(post, url, "/v2/models/stuck/infer", infer_body(), JSON), daemon=True).start()
        time.sleep(1.0)
        start = time.perf_counter()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
        assert time.perf_counter() - start < 20
    finally:
        killer.cancel()
        if proc.poll() is None:
            proc.kill()
