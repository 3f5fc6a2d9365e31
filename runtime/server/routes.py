"""The Starlette application: the Open Inference Protocol v2 routes over the served models, the
model repository extension and ``GET /metrics``.

Endpoints raise (:class:`InputError`, :class:`NotFoundError`, ...) and never catch: the handlers
in :mod:`onnxforge.runtime.server.handlers` answer each error with its class's HTTP status.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import time

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from onnxforge.runtime.errors import InputError, RequestTimeoutError
from onnxforge.runtime.server.access import Access, Guard
from onnxforge.runtime.server.body import check_content_type, compress, decompress, read_body
from onnxforge.runtime.server.config import ServerConfig
from onnxforge.runtime.server.handlers import EXCEPTION_HANDLERS
from onnxforge.runtime.server.infer import PARSE_OFF_LOOP_BYTES, Engine
from onnxforge.runtime.server.metrics import CONTENT_TYPE, Metrics
from onnxforge.runtime.server.repository import Repository
from onnxforge.runtime.server.response import encode_infer_response

__all__ = ["Endpoints", "create_app", "PARSE_OFF_LOOP_BYTES", "EXTENSIONS"]

log = logging.getLogger("onnxforge.serve")
EXTENSIONS = ["binary_tensor_data", "classification", "model_repository"]
REPOSITORY_BODY_BYTES = 64 << 10  # a load/unload/index request carries a few parameters at most


class Endpoints:
    """The protocol's endpoints over ``repository``'s models, one method per route (:meth:`routes`
    maps the paths to them): metadata and readiness, inference through ``engine`` (REST's side of
    what gRPC's servicer does), the model repository extension, ``GET /metrics``. Each raises typed
    errors and never catches; the handlers answer them."""

    def __init__(self, repository: Repository, config: ServerConfig, engine: Engine, metrics: Metrics):
        self.repository, self.config, self.engine, self.metrics = repository, config, engine, metrics
        self.limit = config.max_body_bytes
        self.access = Access(config)

    def model_for(self, request):
        return self.repository.get(request.path_params["name"], request.path_params.get("version"))

    async def live(self, request):
        return Response(status_code=200)

    async def ready(self, request):
        # every model is loaded (and warmed up) before the server listens; none served: not ready
        return Response(status_code=200 if self.repository.names() else 503)

    async def server_metadata(self, request):
        return JSONResponse(server_info())

    async def model_metadata(self, request):
        return JSONResponse(self.repository.metadata(self.model_for(request)))

    async def model_ready(self, request):
        self.model_for(request)
        return Response(status_code=200)

    async def infer(self, request):
        with self.metrics.track("http") as note:
            model = self.model_for(request)
            note.of(model)
            try:
                body = await self._body_within(request)
            except asyncio.TimeoutError:
                # a client trickling its body holds a connection and a buffer: it gets a deadline
                raise RequestTimeoutError(f"the request body did not arrive within {self.config.body_timeout_s:g} s "
                                          "(--body-timeout)") from None
            check_content_type(request.headers.get("content-type"))  # once read: the client sees the 400
            encoding = request.headers.get("content-encoding")
            if encoding and encoding.strip().lower() != "identity":
                body = await self.engine.offload(decompress, body, encoding, self.limit, self.config.max_body_mb)
            encode = functools.partial(_answer_body, accept=request.headers.get("accept-encoding"))
            payload, headers, media = await self.engine.respond(
                model, body, request.headers.get("inference-header-content-length"), encode)
            return Response(payload, headers=headers, media_type=media)

    async def _body_within(self, request) -> bytes:
        """The body, within ``--body-timeout`` (``asyncio.timeout``: no task made per request, as
        ``wait_for`` makes one on Python 3.11)."""
        body = read_body(request, self.limit, self.config.max_body_mb)
        within = getattr(asyncio, "timeout", None)
        if within is None:  # Python 3.10
            return await asyncio.wait_for(body, self.config.body_timeout_s)
        async with within(self.config.body_timeout_s):
            return await body

    async def repository_body(self, request) -> dict:
        body = await read_body(request, REPOSITORY_BODY_BYTES, REPOSITORY_BODY_BYTES / (1 << 20))
        if not body.strip():
            return {}
        try:
            doc = json.loads(body)
        except ValueError as exc:
            raise InputError(f"malformed JSON in the repository request: {exc}") from None
        except RecursionError:
            raise InputError("the repository request's JSON is nested too deep") from None
        if not isinstance(doc, dict):
            raise InputError(f"the repository request must be a JSON object; got {type(doc).__name__}")
        return doc

    async def repository_index(self, request):
        ready = (await self.repository_body(request)).get("ready", False)
        if not isinstance(ready, bool):
            raise InputError(f"'ready' must be true or false; got {ready!r}")
        return JSONResponse(self.repository.index(ready_only=ready))

    def control(self, request, what: str) -> None:
        self.access.control_allowed(request.headers.get("authorization"),
                                    f"{what} of model '{request.path_params['name']}'")

    async def repository_load(self, request):
        self.control(request, "POST load")
        await self.repository_body(request)
        await run_in_threadpool(self.repository.load, request.path_params["name"])
        return Response(status_code=200)

    async def repository_unload(self, request):
        self.control(request, "POST unload")
        await self.repository_body(request)
        self.repository.unload(request.path_params["name"])
        return Response(status_code=200)

    async def prometheus(self, request):
        return Response(self.metrics.render(), media_type=CONTENT_TYPE)

    def routes(self) -> list[Route]:
        return [  # inference first: every request is matched against the routes in this order
            Route("/v2/models/{name}/infer", self.infer, methods=["POST"]),
            Route("/v2/models/{name}/versions/{version}/infer", self.infer, methods=["POST"]),
            Route("/v2/health/live", self.live),
            Route("/v2/health/ready", self.ready),
            Route("/v2", self.server_metadata),
            Route("/v2/models/{name}", self.model_metadata),
            Route("/v2/models/{name}/versions/{version}", self.model_metadata),
            Route("/v2/models/{name}/ready", self.model_ready),
            Route("/v2/models/{name}/versions/{version}/ready", self.model_ready),
            Route("/v2/repository/index", self.repository_index, methods=["POST"]),
            Route("/v2/repository/models/{name}/load", self.repository_load, methods=["POST"]),
            Route("/v2/repository/models/{name}/unload", self.repository_unload, methods=["POST"]),
            Route("/metrics", self.prometheus),
        ]


def create_app(repository: Repository, config: ServerConfig, engine: Engine, metrics: Metrics,
               on_startup=(), on_shutdown=()):
    """The ASGI application: the OIP v2 routes over ``repository``'s models (:class:`Endpoints`).
    ``on_startup`` and ``on_shutdown`` are coroutine functions run on the server's event loop (the
    watcher, gRPC)."""
    endpoints = Endpoints(repository, config, engine, metrics)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        for start in on_startup:
            await start()
        try:
            yield
        finally:
            for stop in on_shutdown:
                await stop()
            await engine.scheduler.close()
            engine.executor.shutdown(wait=False)

    app = Starlette(routes=endpoints.routes(), exception_handlers=EXCEPTION_HANDLERS, lifespan=lifespan)
    return _RequestLog(Guard(app, endpoints.access))


def _answer_body(answer, accept: str | None) -> tuple[bytes, dict, str]:
    """The response body of ``answer`` (compressed as ``accept`` allows), its headers and media type."""
    payload, header_length = encode_infer_response(answer.model.name, answer.model.version, answer.request.id,
                                                   answer.results, answer.request.outputs, answer.labels)
    headers = {}
    if header_length is not None:
        headers["Inference-Header-Content-Length"] = str(header_length)
    payload = compress(payload, accept, headers)
    return payload, headers, "application/json" if header_length is None else "application/octet-stream"


def server_info() -> dict:
    """The server metadata, for REST and gRPC alike."""
    return {"name": "onnxforge", "version": _package_version(), "extensions": list(EXTENSIONS)}


@functools.lru_cache(maxsize=1)
def _package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("onnxforge")
    except PackageNotFoundError:
        return "0"


class _RequestLog:
    """One debug-level log line per request (client, method, path, status, milliseconds). An
    error already answered (the 500 handler logged it) ends here instead of reaching uvicorn,
    which would log it a second time with a traceback."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start = time.perf_counter()
        status = [0]

        async def send_and_note(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        except Exception:
            if not status[0]:
                raise
        finally:
            if log.isEnabledFor(logging.DEBUG):
                client = scope.get("client") or ("-", 0)
                log.debug("%s:%s %s %s %d %.2f ms", client[0], client[1], scope["method"], scope["path"],
                          status[0], (time.perf_counter() - start) * 1000)
