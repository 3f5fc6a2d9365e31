"""orjson's fast paths read and write the protocol's JSON exactly as the general (json) path:
the same documents, the same typed errors, the same values of every dtype."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from onnxforge.runtime.errors import InputError
from onnxforge.runtime.server import oip, oip_json
from onnxforge.runtime.server.oip import RequestedOutput
from onnxforge.runtime.server.oip_json import load_json
from onnxforge.runtime.server.response import encode_infer_response

LIMIT = 1 << 20
DOCS = [
    b'{"inputs": [{"name": "x", "shape": [2, 3], "datatype": "FP32", "data": [1, 2.5, -3e-7, 0, 1e38, -0.0]}]}',
    b'{"inputs":[{"name":"x","shape":[2,2],"datatype":"INT64","data":[[1,2],[3,-4]]}],"parameters":{"a":true}}',
    b'{"id": "a:b", "inputs": [{"name" :"x", "data": [true, false], "parameters": {}}], "outputs": []}',
    '{"id": "caf\u00e9 \u2603", "inputs": []}'.encode(),
    b'\xef\xbb\xbf{"inputs": [{"name": "x", "data": [1]}]}',
    b'  [1, 2, {"k": {"k": {"k": null}}}]  ',
    b'{"inputs": [{"name": "x", "data": [92233720368547758070]}]}',  # past 64 bits: general path's range error
    b'{"inputs": [{"name": "x", "data": [1e400]}]}',  # past a double: the general path reads inf
    b'{"inputs": [{"name": "x", "data": [NaN, Infinity, -Infinity]}]}',
    b'{"inputs": [{"name": "x", "name": "y"}]}',  # a key twice
    b'{"a": {"b": 1, "b": 2}}',
    b'{"a": [{"b": 1}, {"c": 1, "c": 2}]}',
    b'{"inputs": [',
    b'{"inputs": [1, 2,]}',
    b'{"a": "\xff"}',
    b'{"a": "\\ud800", "b": "\\"x\\":"}',  # escapes: always the general path
    b'{"inputs": [{"name": "x", "data": [0.0012345678901234567, 1.5, 0.00012345678901234567]}]}',
    b'{"inputs": [{"name": "x", "data": [0.5, 12345678901234567890123.5, -18446744073709551616]}]}',
    b'{"a": [1, {"b": 1, "b": 2}]}',  # an object after a number: not walked, so never the fast path
    b'{"a": [[1, 2], [3, {"b": 1, "b": 2}]]}',
    b'{"a": [[], {"b": 1, "b": 2}]}',
    b'{"a": "{", "b": [1, 2]}',  # a brace inside a string: more braces than objects, the general path
    b'{"a": [[1, 2], {"b": 1}], "c": {"d": [{"e": 1}]}}',
]


def _read(raw: bytes):
    literals: list = []
    try:
        doc = load_json(raw, literals, body_limit=LIMIT)
    except InputError as exc:
        return "error", str(exc)
    return json.dumps(doc, sort_keys=True), literals


@pytest.mark.parametrize("raw", DOCS)
def test_orjson_reads_every_document_as_json_does(raw, monkeypatch):
    fast = _read(raw)
    monkeypatch.setattr(oip_json, "_fast", lambda raw: oip_json._SLOW)  # the general path only
    assert fast == _read(raw)


def test_the_fast_path_is_taken_for_plain_requests_and_not_for_the_rest():
    assert oip_json._fast(DOCS[0]) is not oip_json._SLOW and oip_json._fast(DOCS[1]) is not oip_json._SLOW
    for raw in DOCS[6:14] + DOCS[-6:-5]:
        assert oip_json._fast(raw) is oip_json._SLOW
    assert oip_json._fast(DOCS[-7]) is not oip_json._SLOW  # long fractions are no integers
    assert oip_json._fast(DOCS[-1]) is not oip_json._SLOW  # objects inside lists of lists are counted
    for raw in DOCS[-5:-1]:
        assert oip_json._fast(raw) is oip_json._SLOW


def _reference(results: dict, requested: list) -> dict:
    """The answer as the json module writes it (the encoder before orjson)."""
    out = []
    for want in requested:
        array = results[want.name]
        out.append({"name": want.name, "shape": list(array.shape), "data": array.ravel().tolist()})
    return {"outputs": out}


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16, np.int8, np.int16, np.int32, np.int64,
                                   np.uint8, np.uint16, np.uint32, np.uint64, np.bool_])
def test_answers_hold_the_same_values_of_every_dtype(dtype):
    rng = np.random.default_rng(1)
    values = (rng.standard_normal((3, 4)) * 1000).astype(dtype)
    values = np.asfortranarray(values)  # not C-contiguous: written in C order all the same
    requested = [RequestedOutput("y", False)]
    body, header = encode_infer_response("m", "1", "id", {"y": values}, requested)
    doc = json.loads(body)
    assert header is None and doc["id"] == "id" and doc["model_version"] == "1"
    out = doc["outputs"][0]
    assert out["shape"] == [3, 4]
    got = np.asarray(out["data"], dtype=dtype).reshape(3, 4)
    np.testing.assert_array_equal(got, values)
    ref = np.asarray(_reference({"y": values}, requested)["outputs"][0]["data"], dtype=dtype).reshape(3, 4)
    np.testing.assert_array_equal(got, ref)


def test_non_finite_answers_are_written_as_json_writes_them():
    values = np.array([[1.5, np.nan, np.inf, -np.inf]], np.float32)
    body, _ = encode_infer_response("m", "1", None, {"y": values}, [RequestedOutput("y", False)])
    assert b"NaN" in body and b"-Infinity" in body and b"null" not in body
    got = np.asarray(json.loads(body)["outputs"][0]["data"], np.float32)
    np.testing.assert_array_equal(got, values.ravel())


def test_binary_and_bytes_outputs_beside_json_ones():
    results = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.array(["x", "yz"], dtype=object),
               "c": np.arange(2, dtype=np.int64)}
    requested = [RequestedOutput("a", True), RequestedOutput("b", False), RequestedOutput("c", False)]
    body, header = encode_infer_response("m", "1", None, results, requested)
    doc = json.loads(body[:header])
    assert doc["outputs"][0]["parameters"]["binary_data_size"] == 24
    np.testing.assert_array_equal(np.frombuffer(body[header:], np.float32).reshape(2, 3), results["a"])
    assert doc["outputs"][1]["data"] == ["x", "yz"] and doc["outputs"][2]["data"] == [0, 1]


_BIG = 2**60 + 2**36 + 1  # int64 -> float32 and int -> double -> float32 round it differently
FLOAT_DATA = [
    [1.5, 2, -3e-7, 0, 1e38, -0.0], [[0.1, 0.2, 0.3], [1, 2, 3]], [0.5, _BIG, -_BIG, 2**64, 2**53 + 1],
    [_BIG, 1, 2, 3, 4, 5], [1e39, 0.5, 1, 2, 3, 4], [1e400, 0.5, 1, 2, 3, 4], [10**400, 0.5, 1, 2, 3, 4],
    [math.nan, 0.5, 1, 2, 3, 4], [math.inf, -math.inf, 1, 2, 3, 4], [[1.5, 2.5], [3.5]], [1.5, 2.5],
    [1.5, 2.5, 3.5, 4.5, 5.5, 6.5, 7.5], [[1.5, 2.5, 3.5], [1.5, [2.5], 3.5]], [1.5, True, 2, 3, 4, 5],
    [1.5, "2", 2, 3, 4, 5], [1.5, None, 2, 3, 4, 5], [[1.5, 2.5, 3.5], {"a": 1}], 70000.5, [65504.0, 65519.9, 1, 2, 3, 4],
]


def _convert(data, datatype: str, literals: bool):
    try:
        return oip._from_json("x", datatype, data, 6, 1 << 20, literals).tobytes()
    except InputError as exc:
        return "error", str(exc)


@pytest.mark.parametrize("datatype", ["FP16", "FP32", "FP64"])
@pytest.mark.parametrize("literals", [False, True])
def test_numbers_go_straight_to_floats_with_the_values_and_errors_of_the_general_path(datatype, literals,
                                                                                       monkeypatch):
    fast = [_convert(data, datatype, literals) for data in FLOAT_DATA]
    monkeypatch.setattr(oip, "_direct_floats", lambda data, want, count: None)  # the general path only
    assert fast == [_convert(data, datatype, literals) for data in FLOAT_DATA]
    assert sum(isinstance(f, bytes) for f in fast) >= 3 and sum(not isinstance(f, bytes) for f in fast) >= 8


def test_the_direct_float_path_is_taken_for_fractions_and_not_for_integers_alone():
    assert oip._direct_floats([0.5, 1, 2], np.dtype(np.float32), 3) is not None
    taken = []
    real = oip._direct_floats
    oip._direct_floats = lambda *a: taken.append(a) or real(*a)  # type: ignore[assignment]
    try:
        oip._from_json("x", "FP32", [1, 2, 3], 3, 1 << 20, False)
        oip._from_json("x", "FP32", [1, 2.5, 3], 3, 1 << 20, False)
    finally:
        oip._direct_floats = real  # type: ignore[assignment]
    assert len(taken) == 1
