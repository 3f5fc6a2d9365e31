"""The load generator of ``serve_compare.py``: closed-loop clients on one asyncio (uvloop) loop.

Each of ``concurrency`` clients holds its own connection and sends the same pre-encoded request
again as soon as its answer has arrived, for a fixed time after a warm-up; latencies are taken per
request. HTTP/1.1 is spoken straight over asyncio's transport (the request's bytes are built once,
an answer is read up to its ``Content-Length``), gRPC through ``grpc.aio`` with the request
serialized once and the answer left as bytes, so the client's own work per request is small: its
ceiling, measured against :func:`trivial_servers` (answers without work), is printed beside every
table. ``python serve_load.py --trivial HTTP_PORT GRPC_PORT`` runs those trivial servers.
"""

from __future__ import annotations

import asyncio
import sys
import time

import numpy as np

__all__ = ["http_request", "run_http", "run_grpc", "summary", "trivial_servers"]

GRPC_INFER = "/inference.GRPCInferenceService/ModelInfer"


def http_request(host: str, port: int, path: str, body: bytes, headers: dict | None = None) -> bytes:
    head = [f"POST {path} HTTP/1.1", f"Host: {host}:{port}", "Content-Type: application/json",
            f"Content-Length: {len(body)}"] + [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


class _HttpClient(asyncio.Protocol):
    """One keep-alive connection; :meth:`ask` sends the request and waits for one whole answer."""

    def __init__(self):
        self.buffer = bytearray()
        self.waiter: asyncio.Future | None = None
        self.need = -1
        self.transport = None

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.buffer += data
        if self.need < 0:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buffer[:end]).lower()
            at = head.find(b"content-length:")
            if at < 0:
                self._done(ConnectionError(f"an answer without Content-Length: {head[:200]!r}"))
                return
            self.status = int(head[9:12])
            self.start = end + 4
            self.need = self.start + int(head[at + 15 :].split(b"\r\n", 1)[0])
        if len(self.buffer) >= self.need:
            body = bytes(self.buffer[self.start : self.need])
            del self.buffer[: self.need]
            self.need = -1
            self._done((self.status, body))

    def _done(self, value):
        if self.waiter is not None and not self.waiter.done():
            if isinstance(value, Exception):
                self.waiter.set_exception(value)
            else:
                self.waiter.set_result(value)

    def connection_lost(self, exc):
        self._done(ConnectionError(f"the server closed the connection ({exc})"))

    async def ask(self, request: bytes) -> tuple[int, bytes]:
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        return await self.waiter


async def _closed_loop(ask, concurrency: int, warmup_s: float, seconds: float) -> dict:
    """``concurrency`` loops of ``await ask(i)``; latencies of the answers that began in the timed part."""
    latencies: list[list[float]] = [[] for _ in range(concurrency)]
    errors: list[str] = []
    answered = [0]
    start = time.perf_counter()
    begin, end = start + warmup_s, start + warmup_s + seconds

    async def one(i: int):
        mine = latencies[i]
        while True:
            t0 = time.perf_counter()
            if t0 >= end:
                return
            try:
                ok = await ask(i)
            except Exception as exc:  # noqa: BLE001 - counted and reported
                errors.append(repr(exc)[:200])
                return
            t1 = time.perf_counter()
            answered[0] += 1
            if not ok:
                errors.append("a non-200 answer")
            elif t0 >= begin:
                mine.append(t1 - t0)

    await asyncio.gather(*(one(i) for i in range(concurrency)))
    return summary([x for lane in latencies for x in lane], seconds, errors) | {"answered": answered[0]}


def summary(latencies: list[float], seconds: float, errors: list[str]) -> dict:
    ms = np.asarray(latencies or [np.nan]) * 1000
    return {"requests": len(latencies), "rps": len(latencies) / seconds, "p50_ms": float(np.percentile(ms, 50)),
            "p99_ms": float(np.percentile(ms, 99)), "errors": len(errors), "first_error": errors[0] if errors else None}


async def run_http(host: str, port: int, request: bytes, concurrency: int, warmup_s: float, seconds: float) -> dict:
    loop = asyncio.get_running_loop()
    clients = [(await loop.create_connection(_HttpClient, host, port))[1] for _ in range(concurrency)]
    try:
        async def ask(i):
            status, _ = await clients[i].ask(request)
            return status == 200
        return await _closed_loop(ask, concurrency, warmup_s, seconds)
    finally:
        for c in clients:
            c.transport.close()


async def run_grpc(target: str, request: bytes, concurrency: int, warmup_s: float, seconds: float,
                   channels: int | None = None) -> dict:
    from grpc import aio

    count = channels or concurrency
    chans = [aio.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1)]) for _ in range(count)]
    calls = [c.unary_unary(GRPC_INFER) for c in chans]  # bytes in, bytes out: no protobuf work here
    try:
        async def ask(i):
            await calls[i % count](request, timeout=30)
            return True
        return await _closed_loop(ask, concurrency, warmup_s, seconds)
    finally:
        for c in chans:
            await c.close()


def trivial_servers(http_port: int, grpc_port: int, http_answer: bytes, grpc_answer: bytes) -> None:
    """Answer every HTTP request with ``http_answer`` and every gRPC call with ``grpc_answer``,
    without looking at them: the fastest server, to measure the load generator's ceiling."""
    import grpc
    import uvloop
    from grpc import aio

    response = (f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(http_answer)}\r\n\r\n"
                .encode() + http_answer)

    class Answer(asyncio.Protocol):
        def connection_made(self, transport):
            self.transport, self.seen = transport, b""

        def data_received(self, data):
            self.seen += data
            while True:  # one answer per whole request (headers + Content-Length body)
                end = self.seen.find(b"\r\n\r\n")
                if end < 0:
                    return
                head = self.seen[:end].lower()
                at = head.find(b"content-length:")
                length = int(head[at + 15 :].split(b"\r\n")[0]) if at >= 0 else 0
                if len(self.seen) < end + 4 + length:
                    return
                self.seen = self.seen[end + 4 + length :]
                self.transport.write(response)

    async def grpc_answer_fn(request, context):
        return grpc_answer

    async def main():
        await asyncio.get_running_loop().create_server(Answer, "127.0.0.1", http_port)
        server = aio.server()
        handler = grpc.method_handlers_generic_handler(
            "inference.GRPCInferenceService", {"ModelInfer": grpc.unary_unary_rpc_method_handler(grpc_answer_fn)})
        server.add_generic_rpc_handlers((handler,))
        server.add_insecure_port(f"127.0.0.1:{grpc_port}")
        await server.start()
        print("ready", flush=True)
        await asyncio.Event().wait()

    uvloop.run(main())


if __name__ == "__main__" and len(sys.argv) == 6 and sys.argv[1] == "--trivial":
    trivial_servers(int(sys.argv[2]), int(sys.argv[3]), open(sys.argv[4], "rb").read(), open(sys.argv[5], "rb").read())
