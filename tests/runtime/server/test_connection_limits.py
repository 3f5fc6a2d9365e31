"""Hostile clients at the connection and body level: malformed HTTP, huge or slow headers, piles
of idle connections and JSON that is cheap to send but dear to parse. Every answer is the
protocol's JSON error, and the server stays live after each (loopback only, bounded loops)."""

from __future__ import annotations

import gzip
import json
import socket
import time
import tracemalloc
from urllib.parse import urlsplit

import numpy as np
import pytest
from _http import live, post

from onnxforge.runtime.errors import InputError
from onnxforge.runtime.inference.session import IOInfo
from onnxforge.runtime.server.models import find_models
from onnxforge.runtime.server.oip import parse_infer_request
from onnxforge.runtime.server.oip_json import max_containers

DIGITS_IN = [IOInfo("x", ("N", 64), np.dtype(np.float32))]
DIGITS_OUT = [IOInfo("logits", ("N", 10), np.dtype(np.float32))]


def connect(url: str) -> socket.socket:
    parts = urlsplit(url)
    return socket.create_connection((parts.hostname, parts.port), timeout=10)


def answer(sock: socket.socket) -> tuple[int, dict, bytes]:
    """Status, headers and body of the one response on ``sock`` (the server closes after it)."""
    data = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
    return int(lines[0].split()[1]), {k.lower(): v for k, v in headers.items()}, body


@pytest.mark.parametrize("raw", [
    b"GARBAGE\r\n\r\n",
    b"GET /v2/health/live HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: abc\r\n\r\n",
    b"GET / HTTP/1.1\r\nBad Header\r\n\r\n",
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(32),  # a TLS hello on the plain port
])
def test_malformed_http_gets_the_protocols_json_error(server, raw):
    with connect(server.url) as sock:
        sock.sendall(raw)
        status, headers, body = answer(sock)
    assert status == 400
    assert headers["content-type"] == "application/json"
    assert json.loads(body)["error"].startswith("malformed HTTP request: ")
    assert live(server.url)


def test_headers_over_the_limit_get_431_before_the_rest_is_read(start_server, model_dir):
    srv = start_server([model_dir / "digits.onnx"], max_header_kb=8)
    with connect(srv.url) as sock:
        sock.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * 20000)
        status, headers, body = answer(sock)
    assert status == 431
    assert headers["content-type"] == "application/json"
    assert json.loads(body) == {"error": "the request line and headers are over the limit of 8 KB (--max-header-kb)"}
    # headers just under the limit are served
    status, _, _ = post(srv.url, "/v2/health/live", b"", {"X-Fill": "a" * 6000})
    assert status == 405  # a POST to a GET route: past the header check, answered by the app
    assert live(srv.url)


def test_headers_that_trickle_in_get_408_and_silent_connections_are_closed(start_server, model_dir):
    srv = start_server([model_dir / "digits.onnx"], header_timeout_s=0.5)
    with connect(srv.url) as slow, connect(srv.url) as silent:
        start = time.monotonic()
        slow.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        status, headers, body = answer(slow)
        assert status == 408 and headers["content-type"] == "application/json"
        assert json.loads(body) == {"error": "the request line and headers did not arrive within 0.5 s "
                                             "(--header-timeout)"}
        assert silent.recv(100) == b""  # closed without a word: it never began a request
        assert time.monotonic() - start < 5
    assert live(srv.url)


def test_a_kept_alive_connection_is_closed_after_the_idle_timeout(start_server, model_dir):
    srv = start_server([model_dir / "digits.onnx"], idle_timeout_s=0.5)
    with connect(srv.url) as sock:
        sock.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert sock.recv(65536).startswith(b"HTTP/1.1 200 ")
        start = time.monotonic()
        assert sock.recv(100) == b""  # closed by the server, not by this client
        assert 0.3 < time.monotonic() - start < 5


def test_health_keeps_answering_when_idle_connections_pile_up(start_server, model_dir):
    srv = start_server([model_dir / "digits.onnx"], max_connections=8)
    pile = []
    try:
        for _ in range(40):  # five times the limit: slowloris sockets, each with half a request line
            sock = connect(srv.url)
            sock.sendall(b"GET /v2/he")
            pile.append(sock)
        for _ in range(5):
            assert live(srv.url)
        closed = 0
        for sock in pile:
            sock.settimeout(2)
            try:
                closed += sock.recv(100) == b""
            except ConnectionResetError:
                closed += 1
            except TimeoutError:  # still held by the server
                pass
        assert closed >= 40 - 8  # the oldest made room; the server holds no more than its limit
    finally:
        for sock in pile:
            sock.close()


def test_a_connection_beyond_the_limit_gets_503_when_every_held_one_is_inside_a_request(start_server, model_dir):
    srv = start_server([model_dir / "digits.onnx"], max_connections=2, body_timeout_s=5)
    busy = []
    try:
        for _ in range(2):  # inside requests: headers done, bodies still arriving
            sock = connect(srv.url)
            sock.sendall(b"POST /v2/models/digits/infer HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n\r\n{")
            busy.append(sock)
        time.sleep(0.3)
        with connect(srv.url) as extra:
            status, headers, body = answer(extra)
        assert status == 503 and headers["retry-after"] == "1" and headers["content-type"] == "application/json"
        assert json.loads(body)["error"].startswith("the server holds its limit of 2 connections, all inside requests")
    finally:
        for sock in busy:
            sock.close()
    deadline = time.monotonic() + 10
    while not live(srv.url):  # the held ones closed: room again
        assert time.monotonic() < deadline
        time.sleep(0.1)


def bomb(count: int) -> bytes:
    """A request whose one input's data is ``count`` empty objects: three bytes each."""
    return b'{"inputs":[{"name":"x","datatype":"FP32","shape":[1,64],"data":[' + b"{}," * (count - 1) + b"{}]}]}"


def test_json_dear_to_parse_is_refused_before_parsing_and_costs_little():
    limit = 64 << 20
    raw = bomb(20_000_000)  # 60 MB; parsing it would take about 1.5 GB
    tracemalloc.start()
    try:
        start = time.perf_counter()
        with pytest.raises(InputError) as caught:
            parse_infer_request(raw, None, DIGITS_IN, DIGITS_OUT, model="digits", max_elements=limit)
        seconds = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert str(caught.value).startswith(f"the request's JSON holds 20000005 arrays and objects, over the limit of "
                                        f"{max_containers(limit)} (one per 64 bytes of --max-body-mb)")
    assert peak < 2 * len(raw), peak  # the scan, not the parse: a copy of the brackets and a block
    assert seconds < 20


def test_a_gzip_bomb_of_empty_objects_gets_400_and_the_server_stays_live(start_server, model_dir):
    srv = start_server([model_dir / "digits.onnx"], max_body_mb=8)
    body = gzip.compress(bomb(2_500_000))
    assert len(body) < 100_000
    status, headers, reply = post(srv.url, "/v2/models/digits/infer", body, {"Content-Encoding": "gzip"})
    assert status == 400 and headers["content-type"] == "application/json"
    assert "arrays and objects, over the limit of" in json.loads(reply)["error"]
    assert live(srv.url)


def test_nested_rows_within_the_limit_still_parse():
    rows = np.arange(64 * 300, dtype=np.float32).reshape(300, 64)
    raw = json.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": [300, 64], "data": rows.tolist()}]})
    parsed = parse_infer_request(raw.encode(), None, DIGITS_IN, DIGITS_OUT, model="digits", max_elements=1 << 20)
    np.testing.assert_array_equal(parsed.feeds["x"], rows)


def make_run_folder(path, model_dir):
    path.mkdir()
    (path / "model.onnx").write_bytes((model_dir / "digits.onnx").read_bytes())
    (path / "source.onnx").write_bytes((model_dir / "mixed.onnx").read_bytes())
    (path / "metrics.json").write_text("{}")
    return path


def test_a_run_folder_serves_its_trained_model_under_the_folders_name(tmp_path, model_dir, start_server, sessions):
    pets = make_run_folder(tmp_path / "pets", model_dir)
    cats = make_run_folder(tmp_path / "cats", model_dir)
    assert find_models([pets, cats]) == {"pets": pets / "model.onnx", "cats": cats / "model.onnx"}
    srv = start_server([pets])
    assert sorted(srv.models) == ["pets"]  # not source.onnx, the untrained start
    x = np.random.default_rng(0).standard_normal((2, 64)).astype(np.float32)
    request = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [2, 64], "data": x.ravel().tolist()}]}
    status, _, reply = post(srv.url, "/v2/models/pets/infer", json.dumps(request).encode())
    assert status == 200
    got = np.array(json.loads(reply)["outputs"][0]["data"], np.float32).reshape(2, 10)
    np.testing.assert_allclose(got, sessions["digits"].run({"x": x})["logits"], rtol=1e-6)


def test_a_plain_folder_still_serves_every_model_file(model_dir):
    assert sorted(find_models([model_dir])) == ["digits", "mixed"]
