"""The protocol's gRPC service: tritonclient.grpc gets exactly in-process results under 16
concurrent clients; every bad request gets INVALID_ARGUMENT naming the problem, and the server
stays live."""

from __future__ import annotations

import threading

import grpc
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.grpc import service_pb2, service_pb2_grpc

DTYPES = {np.float32: "FP32", np.int64: "INT64"}


@pytest.fixture(scope="module")
def grpc_server(model_dir):
    from onnxforge.runtime.server.app import Server, ServerConfig

    srv = Server([model_dir], ServerConfig(port=0, grpc_port=0, device="cpu", max_body_mb=1, max_batch=4))
    srv.start()
    yield srv
    srv.stop()


def _inputs(feeds):
    out = []
    for name, value in feeds.items():
        item = grpcclient.InferInput(name, list(value.shape), DTYPES[value.dtype.type])
        item.set_data_from_numpy(value)
        out.append(item)
    return out


def test_sixteen_concurrent_clients_get_in_process_results(grpc_server, sessions):
    errors, checked = [], []

    def client(seed):
        rng = np.random.default_rng(seed)
        try:
            with grpcclient.InferenceServerClient(grpc_server.grpc_address) as c:
                for _ in range(10):
                    rows = int(rng.integers(1, 5))
                    feeds = {"x": rng.standard_normal((rows, 4)).astype(np.float32),
                             "ids": rng.integers(-99, 99, (rows, 3)).astype(np.int64)}
                    want = sessions["mixed"].run(feeds)
                    result = c.infer("mixed", _inputs(feeds), request_id=f"r{seed}")
                    assert result.get_response().id == f"r{seed}"
                    for name, expected in want.items():
                        got = result.as_numpy(name)
                        assert got.dtype == expected.dtype and got.shape == expected.shape, name
                        np.testing.assert_array_equal(got, expected, err_msg=name)
                    checked.append(1)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(repr(exc))

    threads = [threading.Thread(target=client, args=(s,)) for s in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors[:3]
    assert len(checked) == 160


def test_metadata_ready_index_and_classification(grpc_server, sessions, labels):
    with grpcclient.InferenceServerClient(grpc_server.grpc_address) as c:
        assert c.is_server_live() and c.is_server_ready() and c.is_model_ready("digits")
        assert not c.is_model_ready("nope")
        meta = c.get_model_metadata("digits")
        assert meta.name == "digits" and list(meta.versions) == ["1"] and meta.inputs[0].datatype == "FP32"
        assert list(meta.inputs[0].shape) == [-1, 64]
        assert "model_repository" in c.get_server_metadata().extensions
        assert [m.name for m in c.get_model_repository_index().models] == ["digits", "mixed"]
        x = np.random.default_rng(3).standard_normal((2, 64)).astype(np.float32)
        item = grpcclient.InferInput("x", [2, 64], "FP32")
        item.set_data_from_numpy(x)
        result = c.infer("digits", [item], outputs=[grpcclient.InferRequestedOutput("logits", class_count=2)])
        top = result.as_numpy("logits")
        best = sessions["digits"].run({"x": x})["logits"].argmax(1)
        assert [row[0].decode().split(":")[2] for row in top] == [labels[i] for i in best]


def _stub(srv):
    channel = grpc.insecure_channel(srv.grpc_address)
    return channel, service_pb2_grpc.GRPCInferenceServiceStub(channel)


def _tensor(name, datatype, shape, **contents):
    t = service_pb2.ModelInferRequest.InferInputTensor(name=name, datatype=datatype, shape=shape)
    if contents:
        t.contents.CopyFrom(service_pb2.InferTensorContents(**contents))
    return t


X = np.zeros((1, 64), np.float32).tobytes()
BAD = [
    (dict(inputs=[]), "'inputs' list"),
    (dict(inputs=[_tensor("y", "FP32", [1, 64])], raw_input_contents=[X]), "unknown input 'y'"),
    (dict(inputs=[_tensor("x", "INT64", [1, 64])], raw_input_contents=[X]), "input 'x' of model 'digits' is FP32"),
    (dict(inputs=[_tensor("x", "FP32", [1, 63])], raw_input_contents=[X]), "binary_data_size is 256"),
    (dict(inputs=[_tensor("x", "FP32", [1, 64])], raw_input_contents=[X, X]), "2 raw_input_contents"),
    (dict(inputs=[_tensor("x", "FP32", [1, 64])]), "input 'x' has no data"),
    (dict(inputs=[_tensor("x", "FP32", [1, 2], int64_contents=[1, 2])]), "belong in contents.fp32_contents"),
    (dict(inputs=[_tensor("x", "FP32", [-1, 64])], raw_input_contents=[X]), "negative dimension"),
    (dict(inputs=[_tensor("x", "FP32", [1, 64], fp32_contents=[0.0] * 64)],
          outputs=[service_pb2.ModelInferRequest.InferRequestedOutputTensor(name="nope")]), "unknown output 'nope'"),
    (dict(inputs=[_tensor("x", "FP16", [1, 1], fp32_contents=[1.0])]), "FP16, which has no typed contents"),
    (dict(inputs=[_tensor("x", "FLOAT", [1, 64], fp32_contents=[0.0] * 64)]), "datatype 'FLOAT'"),
]


@pytest.mark.parametrize("fields,needle", BAD, ids=[b[1][:24] for b in BAD])
def test_bad_requests_get_invalid_argument_naming_the_problem(grpc_server, fields, needle):
    channel, stub = _stub(grpc_server)
    with channel:
        with pytest.raises(grpc.RpcError) as caught:
            stub.ModelInfer(service_pb2.ModelInferRequest(model_name="digits", **fields), timeout=30)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, caught.value.details()
        assert needle in caught.value.details()
        assert stub.ServerLive(service_pb2.ServerLiveRequest(), timeout=30).live


def test_unknown_model_is_not_found_and_typed_contents_work(grpc_server, sessions):
    channel, stub = _stub(grpc_server)
    with channel:
        with pytest.raises(grpc.RpcError) as caught:
            stub.ModelInfer(service_pb2.ModelInferRequest(model_name="nope"), timeout=30)
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND and "unknown model 'nope'" in caught.value.details()
        x = np.random.default_rng(5).standard_normal((1, 64)).astype(np.float32)
        reply = stub.ModelInfer(service_pb2.ModelInferRequest(
            model_name="digits", inputs=[_tensor("x", "FP32", [1, 64], fp32_contents=x.ravel().tolist())]), timeout=30)
        got = np.frombuffer(reply.raw_output_contents[0], np.float32).reshape(list(reply.outputs[0].shape))
        np.testing.assert_array_equal(got, sessions["digits"].run({"x": x})["logits"])


def test_grpc_requests_are_counted_by_metrics(grpc_server):
    def count():
        key = 'onnxforge_requests_total{model="digits",outcome="invalid",protocol="grpc",version="1"} '
        line = next((row for row in grpc_server.metrics.render().decode().splitlines() if row.startswith(key)), key + "0")
        return float(line.split()[-1])

    before = count()
    channel, stub = _stub(grpc_server)
    with channel, pytest.raises(grpc.RpcError):
        stub.ModelInfer(service_pb2.ModelInferRequest(model_name="digits"), timeout=30)
    assert count() == before + 1


def test_committed_stubs_match_the_proto():
    pytest.importorskip("grpc_tools")
    from google.protobuf import descriptor_pb2

    from onnxforge.runtime.server.grpc import generate, grpc_service_pb2

    fresh = {}
    exec(compile(generate.generated()["grpc_service_pb2.py"], "fresh_pb2", "exec"), fresh)  # noqa: S102
    a, b = descriptor_pb2.FileDescriptorProto(), descriptor_pb2.FileDescriptorProto()
    grpc_service_pb2.DESCRIPTOR.CopyToProto(a)
    fresh["DESCRIPTOR"].CopyToProto(b)
    assert a == b, "grpc_service.proto changed: run python -m onnxforge.runtime.server.grpc.generate"
