"""GET /metrics parses with prometheus-client's own parser, and its counters equal what was sent."""

from __future__ import annotations

import json

import numpy as np
from prometheus_client.parser import text_string_to_metric_families

from _http import get, post


def _samples(url):
    status, body = get(url, "/metrics")
    assert status == 200
    out = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def _body(x):
    return json.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": list(x.shape),
                                   "data": x.ravel().tolist()}]}).encode()


def test_request_counters_equal_the_requests_sent(model_dir, start_server):
    srv = start_server([model_dir / "digits.onnx"], max_batch=8, max_delay_ms=1)
    x = np.random.default_rng(1).standard_normal((2, 64)).astype(np.float32)
    sent = {"success": 7, "invalid": 3, "not_found": 2}
    for _ in range(sent["success"]):
        assert post(srv.url, "/v2/models/digits/infer", _body(x))[0] == 200
    for _ in range(sent["invalid"]):
        assert post(srv.url, "/v2/models/digits/infer", b'{"inputs": 5}')[0] == 400
    for _ in range(sent["not_found"]):
        assert post(srv.url, "/v2/models/nope/infer", _body(x))[0] == 404
    samples = _samples(srv.url)

    def count(model, version, outcome):
        labels = (("model", model), ("outcome", outcome), ("protocol", "http"), ("version", version))
        return samples.get(("onnxforge_requests_total", labels), 0)

    assert count("digits", "1", "success") == sent["success"]
    assert count("digits", "1", "invalid") == sent["invalid"]
    assert count("", "", "not_found") == sent["not_found"]
    total = sum(v for (name, _), v in samples.items() if name == "onnxforge_requests_total")
    assert total == sum(sent.values())
    latency = samples[("onnxforge_request_seconds_count", (("model", "digits"), ("protocol", "http"), ("version", "1")))]
    assert latency == sent["success"] + sent["invalid"]
    assert samples[("onnxforge_queue_wait_seconds_count", ())] == sent["success"]
    assert samples[("onnxforge_batch_rows_count", ())] == sent["success"]  # one at a time: each its own run
    assert samples[("onnxforge_batch_rows_sum", ())] == 2 * sent["success"]
    assert samples[("onnxforge_requests_in_flight", ())] == 0
    assert samples[("onnxforge_model_loads_total", (("model", "digits"), ("outcome", "loaded")))] == 1
