"""The server's fast paths answer exactly as its general paths do: requests answered inline on the
event loop (runtime/server/inline.py) or in one worker step, against requests taken the long way;
bad input keeps its typed error; a lone request is not held for the batching delay."""

from __future__ import annotations

import json
import time

import grpc
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from tritonclient.grpc import service_pb2, service_pb2_grpc

from onnxforge.runtime import load
from onnxforge.runtime.server.config import ServerConfig, usable_cores
from onnxforge.runtime.server.inline import INLINE_BUDGET_S, MEASURE_FIRST, InlinePolicy, fixed_cost
from tests.runtime.server._http import post

JSON = {"Content-Type": "application/json"}
X = np.linspace(-2, 2, 3 * 64, dtype=np.float32).reshape(3, 64)
GOOD = [
    json.dumps({"inputs": [{"name": "x", "shape": [3, 64], "datatype": "FP32", "data": X.ravel().tolist()}]}),
    json.dumps({"id": "7", "inputs": [{"name": "x", "shape": [3, 64], "datatype": "FP32", "data": X.tolist()}],
                "outputs": [{"name": "logits", "parameters": {"classification": 2}}]}),
    json.dumps({"inputs": [{"name": "x", "shape": [3, 64], "datatype": "FP32", "data": X.ravel().tolist()}],
                "outputs": [{"name": "logits", "parameters": {"binary_data": True}}]}),
]
BAD = [
    b'{"inputs": [',
    json.dumps({"inputs": [{"name": "x", "shape": [3, 64], "datatype": "INT64", "data": [1] * 192}]}).encode(),
    json.dumps({"inputs": [{"name": "x", "shape": [2, 64], "datatype": "FP32", "data": [0.5] * 64}]}).encode(),
    json.dumps({"inputs": [{"name": "y", "shape": [1, 64], "datatype": "FP32", "data": [0.5] * 64}]}).encode(),
    json.dumps({"inputs": [{"name": "x", "shape": [1, 64], "datatype": "FP32", "data": ["a"] * 64}]}).encode(),
    b'{"inputs": [{"name": "x", "name": "x"}]}',
]


def _answers(srv, bodies):
    return [post(srv.url, "/v2/models/digits/infer", b if isinstance(b, bytes) else b.encode(), JSON) for b in bodies]


@pytest.fixture
def generous(monkeypatch):
    """A budget no request of these small models misses on a loaded test machine."""
    monkeypatch.setattr("onnxforge.runtime.server.inline.INLINE_BUDGET_S", 1.0)


def test_inline_answers_equal_worker_answers_byte_for_byte(start_server, model_dir, sessions, generous):
    srv = start_server([model_dir / "digits.onnx"], max_concurrency=1)
    policy = srv.scheduler.inline
    policy.allows = lambda *_: False  # every request on a worker thread
    worker = [_answers(srv, GOOD) for _ in range(MEASURE_FIRST)]
    assert srv.scheduler.stats.inline == 0
    del policy.allows  # the policy's own choice again
    inline = _answers(srv, GOOD)
    assert srv.scheduler.stats.inline == len(GOOD)  # the model is quick: its small requests go inline
    for answers in worker:
        assert [(s, b) for s, _, b in answers] == [(s, b) for s, _, b in inline]
    want = sessions["digits"].run({"x": X})["logits"]
    status, _, body = inline[0]
    out = json.loads(body)["outputs"][0]
    assert status == 200 and out["datatype"] == "FP32" and out["shape"] == [3, 10]
    np.testing.assert_array_equal(np.asarray(out["data"], np.float32).reshape(3, 10), want)
    top = json.loads(inline[1][2])["outputs"][0]
    assert top["datatype"] == "BYTES" and top["shape"] == [3, 2] and top["data"][0].count(":") == 2


def test_bad_requests_get_the_same_typed_errors_inline(start_server, model_dir, generous):
    srv = start_server([model_dir / "digits.onnx"], max_concurrency=1)
    for _ in range(MEASURE_FIRST):
        _answers(srv, GOOD[:1])
    assert srv.scheduler.inline.allows(srv.models["digits"].session, 100)
    inline = _answers(srv, BAD)
    policy = srv.scheduler.inline
    policy.allows = lambda *_: False  # the worker-thread path, for the same requests
    worker = _answers(srv, BAD)
    assert [(s, b) for s, _, b in inline] == [(s, b) for s, _, b in worker]
    assert all(s == 400 and json.loads(b)["error"] for s, _, b in inline)
    assert "datatype" in json.loads(inline[1][2])["error"] or "FP32" in json.loads(inline[1][2])["error"]


def test_grpc_inline_answers_and_errors(start_server, model_dir, sessions, generous):
    srv = start_server([model_dir / "digits.onnx"], grpc_port=0, max_concurrency=1)
    with grpc.insecure_channel(srv.grpc_address) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        request = service_pb2.ModelInferRequest(model_name="digits")
        request.inputs.add(name="x", datatype="FP32", shape=[3, 64])
        request.raw_input_contents.append(X.tobytes())
        answers = [stub.ModelInfer(request, timeout=30) for _ in range(MEASURE_FIRST + 3)]
        assert srv.scheduler.stats.inline == 3
        assert len({a.SerializeToString() for a in answers}) == 1
        got = np.frombuffer(answers[-1].raw_output_contents[0], np.float32).reshape(3, 10)
        np.testing.assert_array_equal(got, sessions["digits"].run({"x": X})["logits"])
        request.inputs[0].datatype = "INT32"
        with pytest.raises(grpc.RpcError) as caught:
            stub.ModelInfer(request, timeout=30)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "FP32" in caught.value.details()


def test_only_models_whose_cost_their_input_size_fixes_go_inline(model_dir, sessions, tmp_path):
    assert fixed_cost(sessions["digits"])
    assert not fixed_cost(sessions["mixed"])  # an integer input (it could be a size or a count)
    body = helper.make_graph([helper.make_node("Identity", ["x_in"], ["x_out"]),
                              helper.make_node("Identity", ["cond_in"], ["cond_out"])], "body",
                             [helper.make_tensor_value_info("i", TensorProto.INT64, []),
                              helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
                              helper.make_tensor_value_info("x_in", TensorProto.FLOAT, ["N"])],
                             [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
                              helper.make_tensor_value_info("x_out", TensorProto.FLOAT, ["N"])])
    graph = helper.make_graph(
        [helper.make_node("Loop", ["", "", "x"], ["y"], body=body)], "looping",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N"])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, tmp_path / "loop.onnx")
    assert not fixed_cost(load(tmp_path / "loop.onnx", device="cpu"))  # a loop runs as long as the data says


def test_a_model_turning_slow_goes_back_to_worker_threads(sessions):
    policy, session = InlinePolicy(), sessions["digits"]
    for _ in range(MEASURE_FIRST):
        policy.note(session, INLINE_BUDGET_S / 10)
    assert policy.allows(session, 1000) and not policy.allows(session, 1 << 20)  # large bodies never inline
    policy.note(session, 0.02)  # one slow request
    assert not policy.allows(session, 1000)
    policy.forget(session)
    assert not policy.allows(session, 1000)  # measured again from the start


def test_a_lone_request_is_not_held_for_the_batching_delay(start_server, model_dir, sessions):
    srv = start_server([model_dir / "digits.onnx"], max_batch=8, max_delay_ms=2000)
    body = json.dumps({"inputs": [{"name": "x", "shape": [1, 64], "datatype": "FP32", "data": X[:1].ravel().tolist()}]})
    for _ in range(3):
        start = time.perf_counter()
        status, _, answer = post(srv.url, "/v2/models/digits/infer", body.encode(), JSON)
        assert status == 200 and time.perf_counter() - start < 1.0  # the delay is 2 s: it was not waited
        got = np.asarray(json.loads(answer)["outputs"][0]["data"], np.float32).reshape(1, 10)
        np.testing.assert_array_equal(got, sessions["digits"].run({"x": X[:1]})["logits"])


def test_default_concurrency_is_the_cores_this_process_may_use():
    assert ServerConfig().max_concurrency == usable_cores() >= 1


def test_batched_requests_read_on_the_loop_answer_as_unbatched_ones(start_server, model_dir, sessions):
    plain = start_server([model_dir / "digits.onnx"], max_concurrency=1)
    batching = start_server([model_dir / "digits.onnx"], max_batch=8, max_concurrency=1)
    plain.scheduler.inline.allows = lambda *_: False  # the worker-thread path as the reference
    for body in GOOD:
        (status, _, got), (want_status, _, want) = _answers(batching, [body])[0], _answers(plain, [body])[0]
        assert status == want_status == 200 and got == want
    assert [(s, b) for s, _, b in _answers(batching, BAD)] == [(s, b) for s, _, b in _answers(plain, BAD)]
    assert batching.scheduler.stats.requests == len(GOOD)  # the bad ones never reached a run
