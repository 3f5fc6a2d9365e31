"""Hostile requests (issue 8): each gets 400 and {"error": ...} naming the problem, nothing large
is allocated before the request is checked, and the server stays live."""

from __future__ import annotations

import asyncio
import http.client
import json
import struct
import time
import tracemalloc
from urllib.parse import urlsplit

import numpy as np
import pytest
from _http import live, post

from onnxforge.runtime.server import body as server_body
from onnxforge.runtime.server import oip_json
from onnxforge.runtime.server.datatypes import DATATYPES
from onnxforge.runtime.server.oip import MAX_JSON_DEPTH, parse_infer_request
from onnxforge.runtime.errors import InputError
from onnxforge.runtime.inference.session import IOInfo

LIMIT = 1 << 20  # the shared server fixture's --max-body-mb 1


def x(shape=(1, 64), data=None, **extra):
    return {"name": "x", "shape": list(shape), "datatype": "FP32", "data": [0.5] * 64 if data is None else data,
            **extra}


def mixed(x_data=(1.0, 2.0, 3.0, 4.0), ids=(1, 2, 3)):
    return [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": list(x_data)},
            {"name": "ids", "shape": [1, 3], "datatype": "INT64", "data": list(ids)}]


def body(*inputs, **extra) -> bytes:
    return json.dumps({"inputs": list(inputs), **extra}).encode()


VALID = body(x()).decode()
DEEP = "nests more than 32 levels deep (the limit)"

# (model, body, headers, message fragment)
HOSTILE = [
    ("digits", b"[" * 200_000, {}, DEEP),
    ("digits", b'{"a":' * 100_000, {}, DEEP),
    ("digits", b"[" * 40 + b"]" * 40, {}, DEEP),
    ("digits", body(x(data=json.loads("[" * 33 + "0.5" + "]" * 33))), {}, DEEP),
    ("digits", b'{"inputs": [], "inputs": ' + json.dumps([x()]).encode() + b"}", {},
     "the request's JSON has key 'inputs' twice in one object; each key may appear once"),
    ("digits", VALID.replace('"shape": [1, 64]', '"shape": [1, 63], "shape": [1, 64]').encode(), {},
     "the request's JSON has key 'shape' twice in one object"),
    ("digits", VALID.replace('"name": "x"', '"name": "x", "name": "y"').encode(), {},
     "the request's JSON has key 'name' twice in one object"),
    ("digits", b'{"inputs": [{"name": "\xff\xfe"}]}', {}, "the request's JSON is not valid UTF-8: byte 0xff at position 22"),
    ("digits", VALID.encode("utf-16"), {}, "the request's JSON is not valid UTF-8: byte 0xff at position 0"),
    ("digits", b'{"inputs": [{"name": "\\ud800", "shape": [1], "datatype": "FP32", "data": [1]}]}', {},
     "unknown input '\ud800'; model 'digits' has inputs: x"),
    ("digits", body(x(), outputs=[{"name": "\ud800"}]), {}, "unknown output '\ud800'; model 'digits' has outputs: logits"),
    ("digits", body(x() | {"name": "a" * 100_000}), {}, "unknown input 'aaaaaaaaaa"),
    ("digits", body(x() | {"name": "a" * 100_000}), {}, "... (100000 characters)'; model 'digits' has inputs: x"),
    ("digits", body(x(shape=[1] * 100_000, data=[0.5])), {}, "input 'x' has a shape of 100000 dimensions, over the limit of 32"),
    ("digits", body(x(shape=[2**31 - 1] * 4)), {},
     "21267647892944572736998860269687930881 elements, more than the 1048576 a request within the body size limit"),
    ("digits", body(x(shape=[10**9, 64], data=[0.5])), {}, "64000000000 elements, more than the 1048576"),
    ("digits", body(x(shape=[1, -64], data=[0.5] * 64)), {}, "input 'x' has a negative dimension -64 in shape [1, -64]"),
    ("digits", body(x(shape=[1, 10**400], data=[0.5])), {}, "input 'x' has dimension 100000000000000000000000000000... (401 characters)"),
    ("digits", body(x(data=[0.5] * 63 + [0.25])).replace(b"0.25]", b"1e400]"), {},
     "input 'x' is FP32: its data has a number too large for a 64-bit float (such as 1e400)"),
    ("digits", body(x(data=[0.5] * 63 + [10**400])), {}, "input 'x' is FP32: value 100000000000...(401 digits) is too large for a 64-bit float"),
    ("digits", body(x(data=[0.5] * 63 + [1e39])), {}, "input 'x' is FP32: value 1e+39 is outside its range [-3.40282e+38, 3.40282e+38]"),
    ("digits", body(x(data=["x" * 200_000] + [0] * 200_000)), {}, "input 'x' is FP32: its data must be numbers; got strings"),
    ("digits", body(x(data=[None] * 64)), {}, "input 'x' is FP32: its data must be numbers; got nulls"),
    ("digits", body(x(data=[{}] * 64)), {}, "input 'x' is FP32: its data must be numbers; got objects"),
    ("digits", body(x(data=[[0.5] * 64, [[0.5]]])), {}, "input 'x' has 'data' that is not a regular (rectangular) list"),
    ("mixed", body(*mixed(ids=(1, 2, 10**30))), {}, "input 'ids' is INT64: value 100000000000...(31 digits) is outside [-9223372036854775808, 9223372036854775807]"),
    ("mixed", body(*mixed(ids=(-1, 2, 2**63))), {}, "input 'ids' is INT64: value 9223372036854775808 is outside [-9223372036854775808"),
    ("mixed", body(*mixed(ids=(1, 2, float("nan")))), {}, "input 'ids' is INT64: its data must be integers; got numbers with fractions"),
    ("mixed", body(*mixed(ids=(1, 2, True))), {}, "input 'ids' is INT64: its data must be integers; got true/false values"),
    ("digits", body(x()), {"Content-Type": "text/html"},
     "Content-Type 'text/html' is not an inference request; send application/json, or application/octet-stream"),
    ("digits", body(x()), {"Content-Type": "multipart/form-data; boundary=xyz"}, "Content-Type 'multipart/form-data; boundary=xyz' is not"),
    # what a browser sends cross-site without asking first: never an inference request
    ("digits", body(x()), {"Content-Type": "application/x-www-form-urlencoded"},
     "is not an inference request; send application/json, or application/octet-stream with an "
     "Inference-Header-Content-Length header (curl: -H 'Content-Type: application/json')"),
    ("digits", body(x()), {"Content-Type": "text/plain;charset=UTF-8"}, "Content-Type 'text/plain;charset=UTF-8' is not"),
    ("digits", body(x()), {"Inference-Header-Content-Length": "1_0"}, "Inference-Header-Content-Length is '1_0'; it must be a whole number"),
    ("digits", body(x()), {"Inference-Header-Content-Length": "+5"}, "Inference-Header-Content-Length is '+5'"),
    ("digits", body(x(), parameters={"binary_data_output": "x" * 1000}), {},
     "parameter binary_data_output must be true or false; got 'xxxxxxxxxxxxxxxx"),
]


@pytest.mark.parametrize("model,raw,headers,message", HOSTILE, ids=[f"{i}-{m[:40]}" for i, (_, _, _, m) in enumerate(HOSTILE)])
def test_hostile_request_gets_400_naming_the_problem_and_the_server_stays_live(server, model, raw, headers, message):
    status, got, answer = post(server.url, f"/v2/models/{model}/infer", raw, headers)
    assert status == 400, answer[:300]
    assert got["content-type"] == "application/json"
    error = json.loads(answer)["error"]
    assert message in error
    assert len(error) < 1000  # what the client sent is quoted, never all of it
    assert live(server.url)


ACCEPTED = [
    ("nan-and-infinity-literals-like-triton", body(x(data=[float("nan"), float("inf"), float("-inf")] + [0.5] * 61)), {}),
    ("integers-beyond-64-bits-for-a-float-input", body(x(data=[2**70] + [0.5] * 63)), {}),
    ("utf8-byte-order-mark", b"\xef\xbb\xbf" + body(x()), {}),
    ("brackets-and-escapes-inside-strings", body(x(), id='[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\\"{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{'), {}),
    ("json-with-charset", body(x()), {"Content-Type": "application/json; charset=utf-8"}),
]


@pytest.mark.parametrize("raw,headers", [c[1:] for c in ACCEPTED], ids=[c[0] for c in ACCEPTED])
def test_unusual_but_valid_requests_are_answered_like_an_in_process_run(server, sessions, raw, headers):
    status, _, answer = post(server.url, "/v2/models/digits/infer", raw, headers)
    assert status == 200, answer[:300]
    request = json.loads(raw.removeprefix(b"\xef\xbb\xbf"))
    feeds = {"x": np.array(request["inputs"][0]["data"], dtype=np.float32).reshape(1, 64)}
    got = json.loads(answer)["outputs"][0]
    np.testing.assert_array_equal(np.array(got["data"], np.float32).reshape(got["shape"]),
                                  sessions["digits"].run(feeds)["logits"])


def test_nesting_at_the_limit_passes_the_depth_check(server):
    # {"inputs": [{"data": <29 levels>}]} is exactly MAX_JSON_DEPTH deep: refused for its rank, not its depth
    nested = json.loads("[" * (MAX_JSON_DEPTH - 3) + "0.5" + "]" * (MAX_JSON_DEPTH - 3))
    status, _, answer = post(server.url, "/v2/models/digits/infer", body(x(shape=[1] * 29, data=nested)))
    assert status == 400 and "input 'x' expects rank 2" in json.loads(answer)["error"]


def raw_request(url, head: str, chunks=(), read_timeout=30):
    """Send ``head`` (request line and headers) and then ``chunks``; the status and JSON error."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=read_timeout)
    try:
        conn.connect()
        conn.sock.sendall(head.encode())
        for chunk in chunks:
            conn.sock.sendall(chunk)
        response = http.client.HTTPResponse(conn.sock, method="POST")
        response.begin()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def test_a_huge_content_length_is_refused_before_the_body_is_read(server):
    head = ("POST /v2/models/digits/infer HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            "Content-Length: 1000000000000\r\n\r\n")
    start = time.monotonic()
    status, answer = raw_request(server.url, head, [b'{"inputs": ['], read_timeout=10)  # then nothing more
    assert status == 400
    assert answer["error"] == "the request body is 1000000000000 bytes, over the limit of 1 MB (--max-body-mb)"
    assert time.monotonic() - start < 5
    assert live(server.url)


def test_a_chunked_body_without_content_length_is_cut_off_at_the_limit(server):
    head = "POST /v2/models/digits/infer HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n"
    piece = b" " * 65536
    chunks = [b"%x\r\n%s\r\n" % (len(piece), piece)] * 24 + [b"0\r\n\r\n"]  # 1.5 MB, over the 1 MB limit
    status, answer = raw_request(server.url, head, chunks)
    assert status == 400
    assert answer["error"].startswith("the request body is more than 1")
    assert answer["error"].endswith("bytes, over the limit of 1 MB (--max-body-mb)")
    assert live(server.url)


def test_a_body_that_trickles_in_gets_408_at_the_deadline(start_server, model_dir):
    """A slow client (slowloris) holds a connection and a buffer only until --body-timeout."""
    srv = start_server([model_dir], body_timeout_s=0.5)
    head = ("POST /v2/models/digits/infer HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            "Content-Length: 1000\r\n\r\n")
    start = time.monotonic()
    status, answer = raw_request(srv.url, head, [b'{"inputs": ['], read_timeout=10)  # then nothing more
    assert status == 408
    assert answer["error"] == "the request body did not arrive within 0.5 s (--body-timeout)"
    assert 0.4 < time.monotonic() - start < 5
    assert live(srv.url)


class StreamedRequest:
    """What _read_body needs of a Starlette request: headers and a body stream of 64 KiB chunks."""

    def __init__(self, size: int | None, declared: int | None):
        self.size, self.read = size, 0
        self.headers = {} if declared is None else {"content-length": str(declared)}

    async def stream(self):
        while self.size is None or self.read < self.size:  # None: a chunked body that never ends
            self.read += 65536
            yield b" " * 65536


def read_body(request: StreamedRequest) -> tuple[int, str]:
    """Read with a 1 MB limit: the traced peak (bytes) and the error."""
    tracemalloc.start()
    try:
        with pytest.raises(InputError) as caught:
            asyncio.run(server_body.read_body(request, LIMIT, 1))
        return tracemalloc.get_traced_memory()[1], str(caught.value)
    finally:
        tracemalloc.stop()


def test_a_body_declared_over_the_limit_is_drained_without_being_kept():
    request = StreamedRequest(LIMIT * 3, declared=LIMIT * 3)
    peak, message = read_body(request)
    assert message == "the request body is 3145728 bytes, over the limit of 1 MB (--max-body-mb)"
    assert request.read == LIMIT * 3  # drained, so the client reads the answer instead of a reset
    assert peak < LIMIT // 4, peak  # the old reader kept the first megabyte before refusing it


def test_an_endless_chunked_body_is_kept_up_to_the_limit_and_read_no_further_than_the_drain():
    request = StreamedRequest(None, declared=None)
    peak, message = read_body(request)
    read = LIMIT + server_body.DRAIN_BYTES + 65536
    assert request.read == read
    assert message == f"the request body is more than {read} bytes, over the limit of 1 MB (--max-body-mb)"
    assert peak < LIMIT + LIMIT // 4, peak


# ---- the parser on its own: what it allocates, and the tensors no test model has ----

FLOATS = [IOInfo("x", ("N", 64), np.dtype(np.float64))]
STRINGS = [IOInfo("s", ("N",), np.dtype(np.str_))]
OUT = [IOInfo("y", ("N",), np.dtype(np.float32))]


def parse(raw, inputs, header_length=None, max_elements=10**9):
    return parse_infer_request(raw, header_length, inputs, OUT, model="m", max_elements=max_elements)


def peak_of(call) -> tuple[int, str]:
    """The traced peak (bytes) while ``call`` runs, and the InputError message it raises."""
    tracemalloc.start()
    try:
        with pytest.raises(InputError) as caught:
            call()
        return tracemalloc.get_traced_memory()[1], str(caught.value)
    finally:
        tracemalloc.stop()


def test_a_shape_claiming_a_billion_elements_fails_before_any_allocation():
    claim = {"name": "x", "shape": [10**9 // 64, 64], "datatype": "FP64"}
    peak, message = peak_of(lambda: parse(body(claim | {"data": [0.5] * 64}), FLOATS))
    assert "input 'x' has 1000000000 elements by its shape but its data holds 64" in message
    assert peak < 1 << 20
    header = body(claim | {"parameters": {"binary_data_size": 512}})
    peak, message = peak_of(lambda: parse(header + b"\0" * 512, FLOATS, len(header)))
    assert "input 'x' has 1000000000 elements of FP64 by its shape (8000000000 bytes) but its binary_data_size is 512" in message
    assert peak < 1 << 20


@pytest.mark.parametrize("shape", [[0, 2**31 - 1, 2**31 - 1], [2**31 - 1, 0, 2**31 - 1, 3]])
def test_an_empty_tensor_with_absurd_other_dimensions_is_refused(shape):
    """Found by ONNXFORGE_FUZZ_SCALE=10: numpy refused to reshape [] to [0, 2**31-1, 2**31-1] (a 500)."""
    with pytest.raises(InputError, match=r"empty, but its other dimensions multiply to \d+, more than the 1000000000"):
        parse(body({"name": "x", "shape": shape, "datatype": "FP64", "data": []}), FLOATS)


def strings_body(items) -> bytes:
    return body({"name": "s", "shape": [len(items)], "datatype": "BYTES", "data": items})


def test_strings_padded_to_the_longest_may_not_outgrow_the_body():
    items = ["x" * 200_000] + [""] * 200_000  # 0.8 MB of JSON; as fixed-width numpy strings 160 GB
    peak, message = peak_of(lambda: parse(strings_body(items), STRINGS, max_elements=LIMIT))
    assert ("input 's' has 200001 strings padded to its longest (200000 characters) would take 160000800000 bytes, "
            "more than the 4194304 allowed") in message
    assert peak < 64 << 20
    chunk = b"".join(struct.pack("<I", len(s)) + s.encode() for s in items)
    header = body({"name": "s", "shape": [len(items)], "datatype": "BYTES", "parameters": {"binary_data_size": len(chunk)}})
    peak, message = peak_of(lambda: parse(header + chunk, STRINGS, len(header), max_elements=LIMIT))
    assert "input 's' has 200001 strings padded to its longest (200000 characters)" in message
    assert peak < 64 << 20
    ok = parse(strings_body(["ab", "c"]), STRINGS, max_elements=LIMIT)
    assert ok.feeds["s"].tolist() == ["ab", "c"]


BYTES_CASES = [
    (lambda: strings_body(["a", "\ud800"]), None, "input 's' holds a string with a lone surrogate (such as \\ud800)"),
    (lambda: strings_body(["a", 1]), None, "input 's' is BYTES: its data must be strings; got integers"),
    (lambda: strings_body([["a"], ["b", "c"]]), None, "input 's' has 'data' that is not a regular (rectangular) list"),
]


@pytest.mark.parametrize("make,header_length,message", BYTES_CASES, ids=[c[2][:40] for c in BYTES_CASES])
def test_bad_string_tensors_are_refused(make, header_length, message):
    with pytest.raises(InputError) as caught:
        parse(make(), STRINGS, header_length)
    assert message in str(caught.value)


def test_binary_strings_beyond_the_shape_stop_the_scan_early():
    chunk = struct.pack("<I", 0) * 100_000
    header = body({"name": "s", "shape": [2], "datatype": "BYTES", "parameters": {"binary_data_size": len(chunk)}})
    with pytest.raises(InputError, match="input 's' has 2 elements by its shape but its binary data holds more strings"):
        parse(header + chunk, STRINGS, len(header))


@pytest.mark.parametrize("datatype,value,message", [
    ("FP16", 70000, "input 'v' is FP16: value 70000 is outside its range [-65504, 65504]"),
    ("UINT64", 2**64, "input 'v' is UINT64: value 18446744073709551616 is outside [0, 18446744073709551615]"),
    ("UINT8", -1, "input 'v' is UINT8: value -1 is outside [0, 255]"),
    ("BOOL", 1, "input 'v' is BOOL: its data must be true/false; got integers"),
])
def test_values_outside_a_datatype_are_refused(datatype, value, message):
    inputs = [IOInfo("v", (1,), DATATYPES[datatype])]
    with pytest.raises(InputError) as caught:
        parse(body({"name": "v", "shape": [1], "datatype": datatype, "data": [value]}), inputs)
    assert message in str(caught.value)


@pytest.mark.parametrize("text,deeper", [
    ('{"a": "' + "[" * 100 + '"}', False),
    ('["\\"' + "[" * 100 + '"]', False),
    ('["\\\\", ' + "[" * 33 + "]" * 33 + "]", True),
    ('["\\\\\\"' + "{" * 50 + '", 1]', False),
    ("[" * 32 + "]" * 32, False),
    ("[" * 33 + "]" * 33, True),
    ("[]" * 1000, False),
])
@pytest.mark.parametrize("block", [1, 3, 1 << 20])
def test_the_depth_scan_skips_strings_and_escapes_across_blocks(monkeypatch, text, deeper, block):
    monkeypatch.setattr(oip_json, "_SCAN_BLOCK", block)
    assert (oip_json.json_shape(text.encode())[0] > MAX_JSON_DEPTH) is deeper
