"""The Triton HTTP client, used as a real user would, gets exactly what in-process inference gives."""

from __future__ import annotations

import numpy as np
import pytest
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException


def mixed_inputs(rng, rows):
    x = rng.standard_normal((rows, 4)).astype(np.float32)
    ids = rng.integers(-1000, 1000, (rows, 3)).astype(np.int64)
    return {"x": x, "ids": ids}


def to_infer_inputs(feeds, binary):
    out = []
    for name, value in feeds.items():
        item = httpclient.InferInput(name, list(value.shape), {np.float32: "FP32", np.int64: "INT64"}[value.dtype.type])
        item.set_data_from_numpy(value, binary_data=binary)
        out.append(item)
    return out


@pytest.mark.parametrize("binary_in", [False, True])
@pytest.mark.parametrize("binary_out", [False, True])
def test_every_output_equals_in_process_inference(server, triton, sessions, rng, binary_in, binary_out):
    client = triton(server.url)
    feeds = mixed_inputs(rng, 5)
    expected = sessions["mixed"].run(feeds)
    outputs = [httpclient.InferRequestedOutput(n, binary_data=binary_out) for n in expected]
    result = client.infer("mixed", to_infer_inputs(feeds, binary_in), outputs=outputs, request_id="r-1")
    assert result.get_response()["id"] == "r-1" and result.get_response()["model_version"] == "1"
    for name, want in expected.items():
        got = result.as_numpy(name)
        assert got.dtype == want.dtype and got.shape == want.shape, name
        np.testing.assert_array_equal(got, want, err_msg=name)
        entry = result.get_output(name)
        assert ("data" in entry) is (not binary_out)


def test_digits_model_without_requested_outputs_gets_binary_outputs(server, triton, sessions, digits):
    client = triton(server.url)
    x = digits[1][0][:64]
    item = httpclient.InferInput("x", list(x.shape), "FP32")
    item.set_data_from_numpy(x)
    result = client.infer("digits", [item])
    assert "parameters" in result.get_output("logits")  # the client asked for binary by default
    np.testing.assert_array_equal(result.as_numpy("logits"), sessions["digits"].run({"x": x})["logits"])


def test_versioned_endpoint_and_compressed_bodies(server, triton, sessions, rng):
    client = triton(server.url)
    feeds = mixed_inputs(rng, 300)  # big enough that the response is compressed too
    result = client.infer("mixed", to_infer_inputs(feeds, False), model_version="1",
                          request_compression_algorithm="gzip", response_compression_algorithm="deflate",
                          outputs=[httpclient.InferRequestedOutput("y", binary_data=False)])
    np.testing.assert_array_equal(result.as_numpy("y"), sessions["mixed"].run(feeds)["y"])
    with pytest.raises(InferenceServerException, match="model 'mixed' has no version '2'; it has: 1"):
        client.infer("mixed", to_infer_inputs(feeds, True), model_version="2")


def test_classification_extension_names_labels_from_metadata(server, triton, labels, sessions, digits):
    client = triton(server.url)
    x = digits[1][0][:3]
    item = httpclient.InferInput("x", [3, 64], "FP32")
    item.set_data_from_numpy(x)
    result = client.infer("digits", [item], outputs=[httpclient.InferRequestedOutput("logits", class_count=2)])
    got = result.as_numpy("logits")
    logits = sessions["digits"].run({"x": x})["logits"]
    assert got.shape == (3, 2)
    for row, scores in zip(got, logits):
        best = np.argsort(-scores, kind="stable")[:2]
        parts = [entry.decode().split(":") for entry in row]
        assert [int(p[1]) for p in parts] == best.tolist()
        assert [p[2] for p in parts] == [labels[i] for i in best]
        np.testing.assert_allclose([float(p[0]) for p in parts], scores[best], rtol=1e-5)


def test_health_and_metadata(server, triton):
    client = triton(server.url)
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("digits") and client.is_model_ready("mixed", "1")
    assert not client.is_model_ready("nope")
    meta = client.get_server_metadata()
    assert meta["name"] == "onnxforge" and "binary_tensor_data" in meta["extensions"]
    model = client.get_model_metadata("mixed")
    assert model["versions"] == ["1"] and model["platform"] == "onnxruntime_onnx"
    assert model["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 4]},
                               {"name": "ids", "datatype": "INT64", "shape": [-1, 3]}]
    assert [(o["name"], o["datatype"]) for o in model["outputs"]] == [
        ("y", "FP32"), ("total", "INT64"), ("positive", "BOOL"), ("half", "FP16")]
    with pytest.raises(InferenceServerException, match="unknown model 'nope'; this server has: digits, mixed"):
        client.get_model_metadata("nope")


@pytest.mark.parametrize("binary", [False, True])
def test_string_tensors_travel_as_bytes(start_server, triton, binary):
    from onnx import TensorProto, helper

    from onnxforge.runtime import load

    graph = helper.make_graph(
        [helper.make_node("Identity", ["s"], ["t"]), helper.make_node("Shape", ["s"], ["n"])], "echo",
        [helper.make_tensor_value_info("s", TensorProto.STRING, ["N"])],
        [helper.make_tensor_value_info("t", TensorProto.STRING, ["N"]),
         helper.make_tensor_value_info("n", TensorProto.INT64, [1])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    srv = start_server({"echo": load(model, device="cpu")})
    words = ["héllo", "", "wörld, with spaces"]
    item = httpclient.InferInput("s", [3], "BYTES")
    item.set_data_from_numpy(np.array([w.encode() for w in words], dtype=object), binary_data=binary)
    result = triton(srv.url).infer("echo", [item], outputs=[httpclient.InferRequestedOutput(n, binary_data=binary)
                                                             for n in ("t", "n")])
    got = [v.decode() if isinstance(v, bytes) else v for v in result.as_numpy("t")]
    assert got == words and result.as_numpy("n").tolist() == [3]
    assert result.get_output("t")["datatype"] == "BYTES"


def test_one_request_mixes_binary_and_json_inputs_and_outputs(server, triton, sessions, rng):
    feeds = mixed_inputs(rng, 4)
    inputs = to_infer_inputs({"x": feeds["x"]}, True) + to_infer_inputs({"ids": feeds["ids"]}, False)
    outputs = [httpclient.InferRequestedOutput("total", binary_data=True),
               httpclient.InferRequestedOutput("y", binary_data=False)]
    result = triton(server.url).infer("mixed", inputs, outputs=outputs)
    expected = sessions["mixed"].run(feeds)
    assert [o["name"] for o in result.get_response()["outputs"]] == ["total", "y"]
    np.testing.assert_array_equal(result.as_numpy("total"), expected["total"])
    np.testing.assert_array_equal(result.as_numpy("y"), expected["y"])


def test_a_large_json_request_is_decoded_off_the_event_loop_and_still_exact(start_server, model_dir, triton,
                                                                            sessions, rng):
    from onnxforge.runtime.server import routes

    srv = start_server([model_dir / "digits.onnx"], max_body_mb=16)
    x = rng.standard_normal((4000, 64)).astype(np.float32)  # about 5 MB of JSON numbers
    item = httpclient.InferInput("x", list(x.shape), "FP32")
    item.set_data_from_numpy(x, binary_data=False)
    assert len(item._get_tensor()["data"]) * 8 > routes.PARSE_OFF_LOOP_BYTES
    result = triton(srv.url).infer("digits", [item], outputs=[httpclient.InferRequestedOutput("logits", binary_data=False)])
    np.testing.assert_array_equal(result.as_numpy("logits"), sessions["digits"].run({"x": x})["logits"])
