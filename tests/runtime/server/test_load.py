"""Under load: 16 concurrent clients all answered correctly, dynamic batching merges requests,
a full queue answers 503, and every request leaves one debug log line."""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.error
import urllib.request

import numpy as np
import tritonclient.http as httpclient

from onnxforge.runtime import load

JSON = {"Content-Type": "application/json"}  # urllib sends a form type otherwise

CLIENTS = 16
REQUESTS_PER_CLIENT = 50  # 800 requests in all


def hammer(url, triton, session, binary: bool):
    """CLIENTS threads, each with its own Triton client, each sending REQUESTS_PER_CLIENT
    requests of 1 to 4 random rows; returns the (got, expected) pairs and any errors."""
    pairs, errors = [], []

    def client_loop(seed):
        rng = np.random.default_rng(seed)
        client = triton(url)
        try:
            for _ in range(REQUESTS_PER_CLIENT):
                x = rng.standard_normal((int(rng.integers(1, 5)), 64)).astype(np.float32)
                item = httpclient.InferInput("x", list(x.shape), "FP32")
                item.set_data_from_numpy(x, binary_data=binary)
                out = httpclient.InferRequestedOutput("logits", binary_data=binary)
                got = client.infer("digits", [item], outputs=[out]).as_numpy("logits")
                pairs.append((got, session.run({"x": x})["logits"]))
        except Exception as exc:  # noqa: BLE001 - reported by the test
            errors.append(repr(exc))
        finally:
            client.close()

    threads = [threading.Thread(target=client_loop, args=(seed,)) for seed in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    return pairs, errors


def test_sixteen_clients_get_exactly_in_process_results(server, triton, sessions):
    pairs, errors = hammer(server.url, triton, sessions["digits"], binary=True)
    assert errors == [] and len(pairs) == CLIENTS * REQUESTS_PER_CLIENT
    for got, want in pairs:
        np.testing.assert_array_equal(got, want)


def test_dynamic_batching_merges_concurrent_requests(start_server, model_dir, triton, sessions):
    srv = start_server([model_dir / "digits.onnx"], max_batch=32, max_delay_ms=5, max_concurrency=2)
    pairs, errors = hammer(srv.url, triton, sessions["digits"], binary=False)
    assert errors == [] and len(pairs) == CLIENTS * REQUESTS_PER_CLIENT
    for got, want in pairs:
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)  # another batch size may round differently
    stats = srv.scheduler.stats
    assert stats.requests == CLIENTS * REQUESTS_PER_CLIENT
    assert stats.batched_requests > 0 and stats.runs < stats.requests and 4 < stats.largest_batch <= 32


def test_runs_in_parallel_up_to_the_limit_then_queue_then_503(start_server, model_dir):
    session = load(model_dir / "digits.onnx", device="cpu")
    gate = threading.Event()
    inside, lock = [0], threading.Lock()
    real_run = session.run

    def held_run(feeds, outputs=None):
        with lock:
            inside[0] += 1
        gate.wait(30)
        return real_run(feeds, outputs)

    session.run = held_run
    srv = start_server({"digits": session}, max_concurrency=2, max_queue=1, warmup=False)
    body = json.dumps({"inputs": [{"name": "x", "shape": [1, 64], "datatype": "FP32", "data": [0.0] * 64}]}).encode()

    def call():
        req = urllib.request.Request(srv.url + "/v2/models/digits/infer", data=body, headers=JSON)
        try:
            with urllib.request.urlopen(req, timeout=60) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    def wait_for(condition):
        deadline = time.monotonic() + 30
        while not condition() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert condition()

    results = []
    clients = [threading.Thread(target=lambda: results.append(call())) for _ in range(3)]
    clients[0].start()
    clients[1].start()
    wait_for(lambda: inside[0] == 2)  # two runs at once, both held by the gate
    clients[2].start()
    wait_for(lambda: srv.scheduler.waiting == 1)  # the third waits in the queue
    time.sleep(0.1)
    assert inside[0] == 2
    status, answer = call()  # the fourth finds the queue full
    assert status == 503 and "the server is busy: 1 requests are waiting for one of 2 model runs" in answer["error"]
    gate.set()
    for t in clients:
        t.join(timeout=60)
    assert sorted(s for s, _ in results) == [200, 200, 200] and inside[0] == 3
    assert call()[0] == 200 and srv.scheduler.stats.rejected == 1


def test_one_debug_log_line_per_request(server, caplog):
    caplog.set_level(logging.DEBUG, logger="onnxforge.serve")
    for path in ("/v2/health/live", "/v2/models/digits", "/v2/models/nope"):
        try:
            urllib.request.urlopen(server.url + path, timeout=30).read()
        except urllib.error.HTTPError:
            pass
    deadline = time.monotonic() + 10  # the line is written once the response has gone out
    while True:
        lines = [r.getMessage() for r in caplog.records if r.name == "onnxforge.serve" and r.levelno == logging.DEBUG]
        if len(lines) >= 3 or time.monotonic() > deadline:
            break
        time.sleep(0.01)
    assert len(lines) == 3
    assert "GET /v2/health/live 200" in lines[0] and "GET /v2/models/digits 200" in lines[1]
    assert "GET /v2/models/nope 404" in lines[2] and lines[2].startswith("127.0.0.1:")


def test_stopping_finishes_the_request_in_flight(start_server, model_dir):
    session = load(model_dir / "digits.onnx", device="cpu")
    gate, entered = threading.Event(), threading.Event()
    real_run = session.run

    def held_run(feeds, outputs=None):
        entered.set()
        gate.wait(30)
        return real_run(feeds, outputs)

    session.run = held_run
    srv = start_server({"digits": session}, warmup=False)
    body = json.dumps({"inputs": [{"name": "x", "shape": [1, 64], "datatype": "FP32", "data": [0.0] * 64}]}).encode()
    answers = []

    def call():
        with urllib.request.urlopen(urllib.request.Request(srv.url + "/v2/models/digits/infer", data=body, headers=JSON),
                                    timeout=60) as response:
            answers.append((response.status, json.loads(response.read())))

    client = threading.Thread(target=call)
    client.start()
    assert entered.wait(30)
    stopper = threading.Thread(target=srv.stop)  # what SIGTERM does: stop accepting, finish, exit
    stopper.start()
    time.sleep(0.3)
    assert stopper.is_alive()  # still waiting for the request in flight
    gate.set()
    stopper.join(timeout=60)
    client.join(timeout=60)
    assert not stopper.is_alive() and answers and answers[0][0] == 200
    assert answers[0][1]["outputs"][0]["shape"] == [1, 10]


def test_batching_with_no_queue_still_serves_one_client(start_server, model_dir, sessions):
    srv = start_server([model_dir / "digits.onnx"], max_batch=4, max_delay_ms=1, max_queue=0)
    x = np.linspace(-1, 1, 64, dtype=np.float32)[None]
    body = json.dumps({"inputs": [{"name": "x", "shape": [1, 64], "datatype": "FP32", "data": x.ravel().tolist()}]})
    for _ in range(5):
        with urllib.request.urlopen(urllib.request.Request(srv.url + "/v2/models/digits/infer", data=body.encode(), headers=JSON),
                                    timeout=30) as response:
            got = np.array(json.loads(response.read())["outputs"][0]["data"], np.float32).reshape(1, 10)
        np.testing.assert_array_equal(got, sessions["digits"].run({"x": x})["logits"])
    assert srv.scheduler.stats.rejected == 0 and srv.scheduler.stats.requests == 5
