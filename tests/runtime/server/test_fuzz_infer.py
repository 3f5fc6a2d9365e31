"""Fuzzing the infer endpoint (issue 8): hypothesis sends arbitrary bytes and structurally mutated
valid requests (JSON and binary tensors) to a real server. Every answer is 200 or a 4xx with
{"error": ...}, never a 500 or a dropped connection; a 200 equals the in-process model run; the
server stays live. The parser is also fuzzed on its own, with more examples.

Bounded for CI: a fixed number of derandomized examples (reproducible), a deadline per example,
no example database; the whole file takes well under 30 s on two cores.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import struct
from urllib.parse import urlsplit

import numpy as np
import pytest
from _http import live
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from onnxforge.runtime.server import oip_json
from onnxforge.runtime.server.oip import DATATYPES, MAX_JSON_DEPTH, InferRequest, classify, parse_infer_request
from onnxforge.runtime.errors import InputError
from onnxforge.runtime.inference.session import validate_feeds

pytestmark = pytest.mark.fuzz

LIMIT = 1 << 20  # the shared server fixture's --max-body-mb 1
# ONNXFORGE_FUZZ_SCALE=N runs N times the examples from a random seed (CI: 1, fixed seed)
SCALE = int(os.environ.get("ONNXFORGE_FUZZ_SCALE", "1"))
HTTP = settings(max_examples=400 * SCALE, deadline=2000, derandomize=SCALE == 1, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
PARSER = settings(HTTP, max_examples=1000 * SCALE, deadline=1000)

# ---- strategies ----

TEXT = (st.text(st.characters(exclude_categories=()), max_size=12)  # lone surrogates too
        | st.sampled_from(["\ud800", "x\udfffy", "\x00", "[[[[", '"\\', "\u00e9\u4e2d"]))
JSON_LEAVES = (st.none() | st.booleans() | st.integers(-(2**70), 2**70)
               | st.sampled_from([10**400, -(10**30), 2**63, -1, 0, 2**31 - 1, 1e400])
               | st.floats(allow_nan=True, allow_infinity=True) | TEXT)
JSON_VALUES = st.recursive(JSON_LEAVES, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(TEXT, inner, max_size=4), max_leaves=12)
SHAPES = (st.lists(st.integers(-3, 5) | st.sampled_from([2**31 - 1, 2**31, 2**63, 10**12, -(2**31)]), max_size=6)
          | st.integers(28, 70).map(lambda rank: [1] * rank))
MODELS = {
    "digits": {"x": ("FP32", (64,))},
    "mixed": {"x": ("FP32", (4,)), "ids": ("INT64", (3,))},
}
OUTPUTS = {"digits": ["logits"], "mixed": ["y", "total", "positive", "half"]}


@st.composite
def valid_requests(draw, model: str):
    """A valid request as a dict, the feeds it carries, and which inputs travel as binary."""
    rows = draw(st.integers(0, 3))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    feeds, binary = {}, {}
    for name, (datatype, tail) in MODELS[model].items():
        if datatype == "FP32":
            array = rng.standard_normal((rows, *tail)).astype(np.float32)
            if rows and draw(st.booleans()):
                array.flat[0] = draw(st.sampled_from([np.nan, np.inf, -np.inf, 0.0, -0.0, 3e38]))
        else:
            array = rng.integers(-(2**40), 2**40, (rows, *tail), dtype=np.int64)
        feeds[name] = array
        binary[name] = draw(st.booleans())
    inputs = []
    for name, array in feeds.items():
        entry = {"name": name, "datatype": MODELS[model][name][0], "shape": list(array.shape)}
        if binary[name]:
            entry["parameters"] = {"binary_data_size": array.nbytes}
        else:
            entry["data"] = array.ravel().tolist()
        inputs.append(entry)
    if draw(st.booleans()):
        inputs.reverse()
    request = {"inputs": inputs}
    if draw(st.booleans()):
        request["id"] = draw(st.text(max_size=8))
    if draw(st.booleans()):
        names = draw(st.lists(st.sampled_from(OUTPUTS[model]), unique=True, max_size=4))
        request["outputs"] = [{"name": n, "parameters": {"binary_data": draw(st.booleans())}} for n in names]
        if model == "digits" and names and draw(st.booleans()):
            request["outputs"][0]["parameters"]["classification"] = draw(st.integers(1, 12))
    if draw(st.booleans()):
        request["parameters"] = {"binary_data_output": draw(st.booleans())}
    return request, feeds, binary


def dumps(request) -> bytes:
    """JSON text of ``request``; a string "__deep<n>__" becomes data nested n levels deep (deeper
    than json.dumps, or the test's own json.loads, could go)."""
    return re.sub(rb'"__deep(\d+)__"', lambda m: b"[" * int(m[1]) + b"0.5" + b"]" * int(m[1]), json.dumps(request).encode())


def encode(request: dict, feeds: dict, binary: dict) -> tuple[bytes, int | None]:
    """The body and Inference-Header-Content-Length (None when it is all JSON)."""
    header = dumps(request)
    entries = request["inputs"] if isinstance(request.get("inputs"), list) else []
    chunks = [feeds[e["name"]].tobytes() for e in entries
              if isinstance(e, dict) and isinstance(e.get("name"), str) and binary.get(e["name"])
              and isinstance(e.get("parameters"), dict) and "binary_data_size" in e["parameters"]]
    return (header + b"".join(chunks), len(header)) if chunks else (header, None)


MUTATIONS = ["replace", "delete", "shape", "rank", "data", "deep-data", "duplicate-input", "drop-input",
             "add-input", "outputs", "duplicate-key", "header-length", "truncate", "top-level"]


@st.composite
def mutated_requests(draw):
    """A valid request with one or two structural mutations: a body, its header length, the model."""
    model = draw(st.sampled_from(sorted(MODELS)))
    request, feeds, binary = draw(valid_requests(model))
    body, header_length = encode(request, feeds, binary)
    for _ in range(draw(st.integers(1, 2))):
        kind = draw(st.sampled_from(MUTATIONS))
        inputs = request["inputs"] if isinstance(request.get("inputs"), list) else []
        entry = draw(st.sampled_from(inputs)) if inputs and all(isinstance(e, dict) for e in inputs) else None
        if kind == "replace" and entry is not None:
            entry[draw(st.sampled_from(["name", "datatype", "shape", "data", "parameters"]))] = draw(JSON_VALUES)
        elif kind == "delete" and entry is not None:
            entry.pop(draw(st.sampled_from(["name", "datatype", "shape", "data", "parameters"])), None)
        elif kind == "shape" and entry is not None:
            entry["shape"] = draw(SHAPES)
        elif kind == "data" and entry is not None:
            entry.pop("parameters", None)
            entry["data"] = draw(st.lists(JSON_LEAVES, max_size=12) | st.lists(st.lists(JSON_LEAVES, max_size=4), max_size=4))
        elif kind == "rank" and entry is not None:  # one element in very many dimensions
            entry.pop("parameters", None)
            entry["shape"], entry["data"] = [1] * draw(st.integers(28, 70) | st.just(1000)), [1]
        elif kind == "deep-data" and entry is not None:  # around MAX_JSON_DEPTH, and far past it
            levels = draw(st.integers(MAX_JSON_DEPTH - 5, MAX_JSON_DEPTH + 3) | st.sampled_from([1000, 5000]))
            entry.pop("parameters", None)
            entry["data"] = f"__deep{levels}__"
        elif kind == "duplicate-input" and inputs:
            inputs.append(json.loads(json.dumps(draw(st.sampled_from(inputs)))))
        elif kind == "drop-input" and inputs:
            inputs.pop(draw(st.integers(0, len(inputs) - 1)))
        elif kind == "add-input":
            inputs.append({"name": draw(TEXT | st.sampled_from(["x", "ids"])),
                           "datatype": draw(st.sampled_from(sorted(DATATYPES)) | st.text(max_size=5)),
                           "shape": draw(SHAPES), "data": draw(st.lists(JSON_LEAVES, max_size=6))})
        elif kind == "outputs":
            request["outputs"] = draw(JSON_VALUES | st.lists(st.fixed_dictionaries(
                {"name": st.sampled_from(OUTPUTS[model] + ["nope", "", "\ud800"])},
                optional={"parameters": st.dictionaries(st.sampled_from(["binary_data", "classification"]),
                                                        JSON_LEAVES, max_size=2)}), max_size=3))
        elif kind == "top-level":
            request[draw(st.sampled_from(["inputs", "outputs", "parameters", "id"]))] = draw(JSON_VALUES)
        body, header_length = encode(request, feeds, binary)
        if kind == "duplicate-key":
            text = dumps(request)
            key = draw(st.sampled_from([b'"inputs": ', b'"shape": ', b'"name": ', b'"datatype": ']))
            if key in text:  # "key": <random value>, "key": <original> -- the second one valid
                text = text.replace(key, key + json.dumps(draw(JSON_VALUES)).encode() + b", " + key, 1)
            body = text + body[header_length:] if header_length is not None else text
            header_length = len(text) if header_length is not None else None
        elif kind == "header-length":
            header_length = draw(st.none() | st.integers(-5, len(body) + 5) | st.sampled_from(["abc", "", "1e3", " 7 "]))
        elif kind == "truncate":
            body = body[: draw(st.integers(0, len(body)))]
    return model, body, header_length


HEADERS = st.fixed_dictionaries({}, optional={
    "Content-Type": st.sampled_from(["application/json", "application/octet-stream", "text/html", "x/y; a=b", ""]),
    "Content-Encoding": st.sampled_from(["gzip", "deflate", "identity", "br", "GZIP"]),
    "Inference-Header-Content-Length": st.sampled_from(["0", "1", "17", "-1", "x", "99999999999999999999"]),
})

# ---- the client and the reference ----


def send(url: str, path: str, body: bytes, headers: dict):
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:  # a dropped connection raises here and fails the example
        conn.request("POST", path, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def decode_response(headers: dict, raw: bytes) -> dict:
    """``{name: array}`` from an infer response, JSON or binary tensors."""
    size = headers.get("inference-header-content-length")
    header = json.loads(raw if size is None else raw[: int(size)])
    binary, offset, out = raw[int(size):] if size is not None else b"", 0, {}
    for entry in header["outputs"]:
        dtype = DATATYPES[entry["datatype"]]
        n = (entry.get("parameters") or {}).get("binary_data_size")
        if n is None:
            array = np.array(entry["data"], dtype=object if entry["datatype"] == "BYTES" else dtype)
        elif entry["datatype"] == "BYTES":
            items, pos, chunk = [], 0, binary[offset : offset + n]
            while pos < len(chunk):
                (length,) = struct.unpack_from("<I", chunk, pos)
                items.append(chunk[pos + 4 : pos + 4 + length].decode())
                pos += 4 + length
            array = np.array(items, dtype=object)
        else:
            array = np.frombuffer(binary[offset : offset + n], dtype=dtype)
        offset += n or 0
        out[entry["name"]] = array.reshape(entry["shape"])
    assert offset == len(binary)
    return out


def reference(session, parsed: InferRequest) -> dict:
    """What the in-process session answers for the same parsed request."""
    results = session.run(validate_feeds(parsed.feeds, session.inputs), [o.name for o in parsed.outputs])
    out = {}
    for want in parsed.outputs:
        array = np.asarray(results[want.name])
        out[want.name] = classify(array, want.classification, session.labels) if want.classification else array
    return out


def check_answer(server, sessions, model: str, body: bytes, headers: dict, expect_ok: bool = False):
    status, got, raw = send(server.url, f"/v2/models/{model}/infer", body, headers)
    assert status == 200 or 400 <= status < 500, (status, raw[:300])
    event(f"HTTP {status}")  # the mix shows with --hypothesis-show-statistics
    if status != 200:
        assert not expect_ok, raw[:300]
        assert got["content-type"] == "application/json"
        assert isinstance(json.loads(raw)["error"], str)
    else:
        session = sessions[model]
        parsed = parse_infer_request(body, headers.get("Inference-Header-Content-Length"), session.inputs,
                                     session.outputs, model=model, max_elements=LIMIT)
        answer, expected = decode_response(got, raw), reference(session, parsed)
        assert list(answer) == list(expected)
        for name, array in expected.items():
            if array.dtype.kind in "OU":
                assert answer[name].tolist() == array.tolist()
            else:  # NaN equals NaN here; JSON numbers come back exactly
                np.testing.assert_array_equal(answer[name].astype(array.dtype), array)
    assert live(server.url)
    return status


# ---- the endpoint ----


@HTTP
@given(model=st.sampled_from(sorted(MODELS)), body=st.binary(max_size=600), headers=HEADERS)
def test_arbitrary_bytes_get_a_json_4xx_and_the_server_stays_live(server, sessions, model, body, headers):
    status = check_answer(server, sessions, model, body, headers)
    assert status != 200 or body.strip().startswith(b"{") or "Content-Encoding" in headers


@HTTP
@given(data=st.data())
def test_valid_requests_json_or_binary_equal_the_in_process_run(server, sessions, data):
    model = data.draw(st.sampled_from(sorted(MODELS)))
    request, feeds, binary = data.draw(valid_requests(model))
    body, header_length = encode(request, feeds, binary)
    headers = {} if header_length is None else {"Inference-Header-Content-Length": str(header_length)}
    for name, array in feeds.items():  # JSON numbers carry the exact float32 values
        if not binary[name]:
            assert np.array_equal(np.array(array.ravel().tolist(), array.dtype).reshape(array.shape), array, equal_nan=True)
    check_answer(server, sessions, model, body, headers, expect_ok=True)


@HTTP
@given(case=mutated_requests())
def test_mutated_requests_get_200_or_a_json_4xx_never_a_500(server, sessions, case):
    model, body, header_length = case
    headers = {} if header_length is None else {"Inference-Header-Content-Length": str(header_length)}
    check_answer(server, sessions, model, body, headers)


# ---- the parser on its own ----


def parse_or_input_error(session, body, header_length, model):
    try:
        parsed = parse_infer_request(body, header_length, session.inputs, session.outputs, model=model,
                                     max_elements=LIMIT)
    except InputError as exc:
        assert str(exc) and len(str(exc)) < 2000
        return None
    assert isinstance(parsed, InferRequest)
    for array in parsed.feeds.values():
        assert isinstance(array, np.ndarray) and array.size <= LIMIT
    return parsed


@PARSER
@given(model=st.sampled_from(sorted(MODELS)), body=st.binary(max_size=400),
       header_length=st.none() | st.integers(-2, 500).map(str) | st.text(max_size=4))
def test_the_parser_returns_or_raises_input_error_on_arbitrary_bytes(sessions, model, body, header_length):
    parse_or_input_error(sessions[model], body, header_length, model)


@PARSER
@given(case=mutated_requests())
def test_the_parser_returns_or_raises_input_error_on_mutated_requests(sessions, case):
    model, body, header_length = case
    parse_or_input_error(sessions[model], body, header_length, model)


@PARSER
@given(value=JSON_VALUES, nest=st.integers(0, 40), block=st.sampled_from([1, 2, 7, 1 << 20]), ascii=st.booleans())
def test_the_depth_scan_agrees_with_the_parsed_depth(value, nest, block, ascii):
    def depth(v) -> int:
        if isinstance(v, list):
            return 1 + max(map(depth, v), default=0)
        if isinstance(v, dict):
            return 1 + max(map(depth, v.values()), default=0)
        return 0

    for _ in range(nest):
        value = [value, '\\"[{']
    text = json.dumps(value, ensure_ascii=ascii).encode("utf-8", "surrogatepass")
    saved = oip_json._SCAN_BLOCK
    oip_json._SCAN_BLOCK = block  # small blocks carry quotes, escapes and depth across their edges
    try:
        assert (oip_json.json_shape(text)[0] > MAX_JSON_DEPTH) is (depth(value) > MAX_JSON_DEPTH)
    finally:
        oip_json._SCAN_BLOCK = saved
