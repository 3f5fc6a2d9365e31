"""The Starlette application: the Open Inference Protocol v2 routes over the served models.

Endpoints raise (:class:`InputError`, :class:`NotFoundError`, ...) and never catch: the handlers
in :mod:`onnxforge.runtime.server.handlers` answer each error with its class's HTTP status.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from onnxforge.runtime.errors import NotFoundError, RequestTimeoutError
from onnxforge.runtime.inference.session import validate_feeds
from onnxforge.runtime.server.body import check_content_type, compress, decompress, read_body
from onnxforge.runtime.server.config import ServerConfig
from onnxforge.runtime.server.handlers import EXCEPTION_HANDLERS
from onnxforge.runtime.server.models import ServedModel
from onnxforge.runtime.server.oip import parse_infer_request
from onnxforge.runtime.server.response import encode_infer_response
from onnxforge.runtime.server.scheduler import Scheduler

__all__ = ["create_app", "PARSE_OFF_LOOP_BYTES"]

log = logging.getLogger("onnxforge.serve")
PARSE_OFF_LOOP_BYTES = 1 << 20  # bodies this large are decoded on a worker thread
# Large bodies are parsed one at a time: json.loads holds the GIL, so parsing two at once is no
# faster, and one at a time bounds the memory that parsing takes to one request's worth.
LARGE_PARSES_AT_ONCE = 1


def create_app(models: dict[str, ServedModel], config: ServerConfig, scheduler: Scheduler):
    """The ASGI application: the OIP v2 routes over ``models``."""
    limit = config.max_body_bytes
    large_parses = asyncio.Semaphore(LARGE_PARSES_AT_ONCE)

    def model_for(request) -> ServedModel:
        name = request.path_params["name"]
        model = models.get(name)
        if model is None:
            raise NotFoundError(f"unknown model '{name}'; this server has: {', '.join(sorted(models))}")
        version = request.path_params.get("version")
        if version is not None and version != model.version:
            raise NotFoundError(f"model '{name}' has no version '{version}'; it has: {model.version}")
        return model

    async def healthy(request):
        # live and ready alike: every model is loaded (and warmed up) before the server listens
        return Response(status_code=200)

    async def server_metadata(request):
        return JSONResponse({"name": "onnxforge", "version": _package_version(),
                             "extensions": ["binary_tensor_data", "classification"]})

    async def model_metadata(request):
        return JSONResponse(model_for(request).metadata())

    async def model_ready(request):
        model_for(request)
        return Response(status_code=200)

    async def infer(request):
        model = model_for(request)
        session = model.session
        try:
            body = await asyncio.wait_for(read_body(request, limit, config.max_body_mb), config.body_timeout_s)
        except asyncio.TimeoutError:
            # a client trickling its body holds a connection and a buffer: it gets a deadline
            raise RequestTimeoutError(f"the request body did not arrive within {config.body_timeout_s:g} s "
                                      "(--body-timeout)") from None
        check_content_type(request.headers.get("content-type"))  # once read: the client sees the 400
        body = decompress(body, request.headers.get("content-encoding"), limit, config.max_body_mb)
        args = (body, request.headers.get("inference-header-content-length"), session.inputs, session.outputs)
        kwargs = {"model": model.name, "max_elements": limit}
        if len(body) < PARSE_OFF_LOOP_BYTES:
            parsed = parse_infer_request(*args, **kwargs)
        else:
            async with large_parses:
                parsed = await run_in_threadpool(parse_infer_request, *args, **kwargs)
        feeds = validate_feeds(parsed.feeds, session.inputs)
        results = await scheduler.run(session, feeds, [o.name for o in parsed.outputs])
        labels = session.labels if any(o.classification for o in parsed.outputs) else None
        payload, header_length = encode_infer_response(model.name, model.version, parsed.id, results,
                                                       parsed.outputs, labels)
        headers = {}
        if header_length is not None:
            headers["Inference-Header-Content-Length"] = str(header_length)
        payload = compress(payload, request.headers.get("accept-encoding"), headers)
        media = "application/json" if header_length is None else "application/octet-stream"
        return Response(payload, headers=headers, media_type=media)

    routes = [
        Route("/v2/health/live", healthy),
        Route("/v2/health/ready", healthy),
        Route("/v2", server_metadata),
        Route("/v2/models/{name}", model_metadata),
        Route("/v2/models/{name}/versions/{version}", model_metadata),
        Route("/v2/models/{name}/ready", model_ready),
        Route("/v2/models/{name}/versions/{version}/ready", model_ready),
        Route("/v2/models/{name}/infer", infer, methods=["POST"]),
        Route("/v2/models/{name}/versions/{version}/infer", infer, methods=["POST"]),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        await scheduler.close()

    app = Starlette(routes=routes, exception_handlers=EXCEPTION_HANDLERS, lifespan=lifespan)
    return _RequestLog(app)


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
