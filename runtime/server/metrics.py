"""``GET /metrics``: the server's counters in Prometheus's text format (prometheus-client).

Each server has its own registry, so servers in one process (tests, embedding) count apart:

    onnxforge_requests_total{model,version,protocol,outcome}   inference requests answered
    onnxforge_request_seconds{model,version,protocol}          their latency (histogram)
    onnxforge_queue_wait_seconds                               time waiting for a model run
    onnxforge_batch_rows                                       rows in each dynamically batched run
    onnxforge_requests_in_flight                               requests being answered now
    onnxforge_model_loads_total{model,outcome}                 loaded, refused (by --watch), unloaded
    onnxforge_model_swaps_total{model}                         served versions replaced in place

``outcome`` of a request is ``success``, ``invalid`` (the request was wrong: HTTP 400, 408, 413,
431 or gRPC INVALID_ARGUMENT), ``not_found`` (no such model or version), ``busy`` (503,
UNAVAILABLE), ``cancelled`` (the client left) or ``error`` (the server failed). A request for an
unknown model is counted with ``model=""``, so clients cannot mint label values.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from onnxforge.runtime.errors import OnnxforgeError

__all__ = ["Metrics", "CONTENT_TYPE", "outcome_of"]

CONTENT_TYPE = CONTENT_TYPE_LATEST
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
ROW_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)


def outcome_of(exc: BaseException) -> str:
    if isinstance(exc, (asyncio.CancelledError, ConnectionError)):
        return "cancelled"
    status = exc.http_status if isinstance(exc, OnnxforgeError) else 400 if isinstance(exc, ValueError) else 500
    if status == 404:
        return "not_found"
    if status == 503:
        return "busy"
    return "invalid" if 400 <= status < 500 else "error"


class _Note:
    """What a request resolved to, filled in as it goes (labels of its count)."""

    model = ""
    version = ""

    def of(self, model) -> None:
        self.model, self.version = model.name, model.version


class Metrics:
    """One server's metrics and its registry."""

    def __init__(self):
        self.registry = registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter("onnxforge_requests", "Inference requests answered, by outcome",
                                ["model", "version", "protocol", "outcome"], registry=registry)
        self.latency = Histogram("onnxforge_request_seconds", "Inference request latency in seconds",
                                 ["model", "version", "protocol"], buckets=LATENCY_BUCKETS, registry=registry)
        self.queue_wait = Histogram("onnxforge_queue_wait_seconds", "Seconds a request waited for a model run",
                                    buckets=LATENCY_BUCKETS, registry=registry)
        self.batch_rows = Histogram("onnxforge_batch_rows", "Rows in each model run that dynamic batching merged",
                                    buckets=ROW_BUCKETS, registry=registry)
        self.in_flight = Gauge("onnxforge_requests_in_flight", "Inference requests being answered",
                               registry=registry)
        self.loads = Counter("onnxforge_model_loads", "Model versions loaded, refused or unloaded",
                             ["model", "outcome"], registry=registry)
        self.swaps = Counter("onnxforge_model_swaps", "Served model versions replaced in place",
                             ["model"], registry=registry)

    def render(self) -> bytes:
        return generate_latest(self.registry)

    @contextlib.contextmanager
    def track(self, protocol: str):
        """Count one inference request: ``with metrics.track("http") as note: ... note.of(model)``."""
        note = _Note()
        self.in_flight.inc()
        start = time.perf_counter()
        outcome = "success"
        try:
            yield note
        except BaseException as exc:
            outcome = outcome_of(exc)
            raise
        finally:
            self.in_flight.dec()
            self.requests.labels(note.model, note.version, protocol, outcome).inc()
            self.latency.labels(note.model, note.version, protocol).observe(time.perf_counter() - start)

    # -- hooks for the repository, the watcher and the scheduler --------------------------------
    def on_repository(self, event: str, old, new) -> None:
        model = new if new is not None else old
        if event == "swap":
            self.swaps.labels(model.name).inc()
        self.loads.labels(model.name, "unloaded" if event == "unload" else "loaded").inc()

    def on_watch(self, name: str, outcome: str) -> None:
        if outcome == "refused":
            self.loads.labels(name, "refused").inc()
