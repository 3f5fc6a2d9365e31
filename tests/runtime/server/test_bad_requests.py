"""Each bad request gets HTTP 400 with {"error": ...} naming the problem; the server stays up."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest
from _http import get, post


def tensor(name="x", shape=(1, 64), datatype="FP32", data=None):
    count = int(np.prod(shape)) if all(isinstance(d, int) and d >= 0 for d in shape) else 1
    return {"name": name, "shape": list(shape), "datatype": datatype, "data": [0.5] * count if data is None else data}


def request(*inputs, **extra):
    return json.dumps({"inputs": list(inputs), **extra}).encode()


BAD = [
    (b'{"inputs": [', "malformed JSON in the request"),
    (b'[1, 2]', "the request must be a JSON object with an 'inputs' list"),
    (b'{"inputs": []}', "the request must have an 'inputs' list"),
    (request(tensor("z")), "unknown input 'z'; model 'digits' has inputs: x"),
    (request(tensor(datatype="FP64")), "input 'x' of model 'digits' is FP32; the request says FP64"),
    (request(tensor(datatype="INT64", data=[1] * 64)), "input 'x' of model 'digits' is FP32; the request says INT64"),
    (request(tensor(datatype="FLOAT")), "input 'x' has datatype 'FLOAT', which is not one of BOOL"),
    (request(tensor(data=["a"] * 64)), "input 'x' is FP32: its data must be numbers; got strings"),
    (request(tensor(shape=(2, 64), data=[0.5] * 64)), "input 'x' has 128 elements by its shape but its data holds 64"),
    (request(tensor(shape=(1, 63), data=[0.5] * 63)), "input 'x' expects size 64 on axis 1 float32 [N, 64], got shape [1, 63]"),
    (request(tensor(shape=(64,), data=[0.5] * 64)), "input 'x' expects rank 2 float32 [N, 64], got rank 1"),
    (request(tensor(shape=(-1, 64), data=[0.5] * 64)), "input 'x' has a negative dimension -1 in shape [-1, 64]"),
    (request(tensor(shape=(10**12, 64), data=[0.5] * 64)), "input 'x' has dimension 1000000000000 in shape"),
    (request(tensor(shape=(2**30, 64), data=[0.5] * 64)), "input 'x' has shape [1073741824, 64], 68719476736 elements, more than"),
    (request(tensor(shape=(1, "64"))), "input 'x' needs a 'shape' list of integers"),
    (request(tensor(data=[[0.5] * 30, [0.5] * 34])), "input 'x' has 'data' that is not a regular (rectangular) list"),
    (request(tensor(), tensor()), "input 'x' appears twice in the request"),
    (request({"name": "x", "shape": [1, 64], "datatype": "FP32"}), "input 'x' has neither 'data' nor a binary_data_size"),
    (request(tensor(), outputs=[{"name": "probs"}]), "unknown output 'probs'; model 'digits' has outputs: logits"),
]


@pytest.mark.parametrize("body,message", BAD, ids=[m[:40] for _, m in BAD])
def test_bad_json_requests_get_400_naming_the_problem(server, body, message):
    status, headers, raw = post(server.url, "/v2/models/digits/infer", body)
    assert status == 400, raw
    assert headers["content-type"] == "application/json"
    assert message in json.loads(raw)["error"]


def test_bad_binary_requests_get_400(server):
    header = request({"name": "x", "shape": [1, 64], "datatype": "FP32", "parameters": {"binary_data_size": 256}})
    cases = [
        (header + b"\0" * 100, len(header), "input 'x' says binary_data_size 256, but only 100 bytes"),
        (header + b"\0" * 300, len(header), "the body carries 300 bytes of binary data after the JSON header, but"),
        (header + b"\0" * 256, "lots", "Inference-Header-Content-Length is 'lots'"),
        (header + b"\0" * 256, len(header) + 10**6, "Inference-Header-Content-Length is"),
    ]
    wrong = request({"name": "x", "shape": [1, 64], "datatype": "FP32", "parameters": {"binary_data_size": 128}})
    cases.append((wrong + b"\0" * 128, len(wrong), "input 'x' has 64 elements of FP32 by its shape (256 bytes) but its "
                                                    "binary_data_size is 128"))
    for body, length, message in cases:
        status, _, raw = post(server.url, "/v2/models/digits/infer", body,
                              {"Inference-Header-Content-Length": str(length)})
        assert status == 400 and message in json.loads(raw)["error"], raw
    status, _, raw = post(server.url, "/v2/models/digits/infer", header + b"\0" * 256,
                          {"Inference-Header-Content-Length": str(len(header))})
    assert status == 200, raw


def test_body_over_the_limit_gets_400_and_the_server_keeps_answering(server):
    big = request(tensor(shape=(5000, 64), data=[0.25] * 5000 * 64))  # about 2 MB; the fixture allows 1 MB
    status, _, raw = post(server.url, "/v2/models/digits/infer", big)
    assert status == 400
    assert f"the request body is {len(big)} bytes, over the limit of 1 MB (--max-body-mb)" in json.loads(raw)["error"]
    bomb = gzip.compress(b" " * (3 << 20))
    status, _, raw = post(server.url, "/v2/models/digits/infer", bomb, {"Content-Encoding": "gzip"})
    assert status == 400 and "decompressed request body is over the limit of 1 MB" in json.loads(raw)["error"]
    status, _, raw = post(server.url, "/v2/models/digits/infer", request(tensor()), {"Content-Encoding": "br"})
    assert status == 400 and "Content-Encoding 'br' is not supported" in json.loads(raw)["error"]
    assert get(server.url, "/v2/health/live")[0] == 200


def test_unknown_routes_models_and_methods_get_json_errors(server):
    status, raw = get(server.url, "/v2/models/nope")
    assert status == 404 and json.loads(raw)["error"] == "unknown model 'nope'; this server has: digits, mixed"
    status, raw = get(server.url, "/v1/models")
    assert status == 404 and json.loads(raw)["error"] == "no such endpoint: GET /v1/models"
    status, raw = get(server.url, "/v2/models/digits/infer")
    assert status == 405 and "GET is not allowed" in json.loads(raw)["error"]
    status, _, raw = post(server.url, "/v2/models/nope/infer", request(tensor()))
    assert status == 404 and "unknown model 'nope'" in json.loads(raw)["error"]


def test_server_answers_after_every_bad_request(server):
    for body, _ in BAD:
        post(server.url, "/v2/models/digits/infer", body)
    assert get(server.url, "/v2/health/live") == (200, b"")
    status, _, raw = post(server.url, "/v2/models/digits/infer", request(tensor()))
    assert status == 200 and json.loads(raw)["outputs"][0]["shape"] == [1, 10]
