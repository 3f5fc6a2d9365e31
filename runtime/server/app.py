"""An HTTP inference server speaking the Open Inference Protocol v2 (KServe / Triton REST API),
built on Starlette and served by uvicorn.

``Server(["models/"]).run()`` serves every ``.onnx`` in a folder under its file name;
``Server({"name": session})`` serves sessions an application already holds. ``start()`` runs it
on a background thread (for embedding and tests), ``run()`` in the foreground until SIGTERM or
Ctrl+C, after which requests in flight are finished before the process exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gzip
import json
import logging
import os
import signal
import socket
import threading
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from onnxforge.runtime.server.oip import encode_infer_response, parse_infer_request, tensor_metadata
from onnxforge.runtime.server.scheduler import Scheduler, ServerBusy
from onnxforge.runtime.errors import ConfigError, InputError, ModelError, OnnxforgeError
from onnxforge.runtime.inference.session import validate_feeds

__all__ = ["ServedModel", "Server", "ServerConfig", "find_models"]

log = logging.getLogger("onnxforge.serve")
VERSION = "1"
PARSE_OFF_LOOP_BYTES = 1 << 20  # bodies this large are decoded on a worker thread
COMPRESS_MIN_BYTES = 1024
DRAIN_BYTES = 64 << 20  # past the body limit, read (and drop) this much so the client sees the 400
# Content-Types an inference body may declare (or none): JSON, the binary extension, and what
# curl -d and plain-text clients send for a JSON body.
BODY_TYPES = ("application/json", "application/octet-stream", "application/x-www-form-urlencoded", "text/plain")


@dataclass(frozen=True)
class ServerConfig:
    """How the server listens and behaves under load (the ``onnxforge serve`` options)."""

    host: str = "127.0.0.1"
    port: int = 8000
    device: str = "auto"
    threads: int | None = None
    max_concurrency: int = field(default_factory=lambda: os.cpu_count() or 1)
    max_queue: int = 256
    max_batch: int = 1
    max_delay_ms: float = 2.0
    max_body_mb: float = 64.0
    body_timeout_s: float = 30.0  # a request body must arrive whole within this (slow clients)
    warmup: bool = True

    @property
    def max_body_bytes(self) -> int:
        return int(self.max_body_mb * 1024 * 1024)


@dataclass
class ServedModel:
    """One model the server offers: its name (the file name without ``.onnx``) and session."""

    name: str
    session: object
    path: str | None = None
    version: str = VERSION

    def metadata(self) -> dict:
        return {
            "name": self.name,
            "versions": [self.version],
            "platform": "onnxruntime_onnx",
            "inputs": [tensor_metadata(i) for i in self.session.inputs],
            "outputs": [tensor_metadata(o) for o in self.session.outputs],
        }


def find_models(paths) -> dict[str, Path]:
    """``{name: file}`` for model files and folders (a folder gives each ``.onnx`` in it)."""
    found: dict[str, Path] = {}
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.suffix == ".onnx" and p.is_file())
            if not files:
                raise ModelError(f"folder '{path}' holds no .onnx files to serve")
        elif path.is_file():
            files = [path]
        else:
            raise ModelError(f"'{path}' does not exist; give .onnx files or folders that hold them")
        for file in files:
            name = file.name[: -len(".onnx")] if file.name.endswith(".onnx") else file.name
            if name in found and found[name].resolve() != file.resolve():
                raise ConfigError(f"two models would be named '{name}' ({found[name]} and {file}); "
                                  f"rename one or serve them separately")
            found[name] = file
    if not found:
        raise ModelError("no models to serve; give .onnx files or folders that hold them")
    return found


def _load_models(paths, config: ServerConfig) -> dict[str, ServedModel]:
    from onnxforge.runtime.inference.session import load

    models = {}
    for name, file in find_models(paths).items():
        session = load(file, device=config.device, threads=config.threads)
        models[name] = ServedModel(name, session, str(file))
    return models


class _Problem(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def _error(status: int, message: str, headers: dict | None = None):
    from starlette.responses import Response

    # ASCII JSON: a message may quote a client's string, lone surrogates (from "\\ud800") included
    body = json.dumps({"error": message}, separators=(",", ":")).encode()
    return Response(body, status_code=status, headers=headers, media_type="application/json")


def create_app(models: dict[str, ServedModel], config: ServerConfig, scheduler: Scheduler):
    """The Starlette application: the OIP v2 routes over ``models``."""
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.exceptions import HTTPException
    from starlette.requests import ClientDisconnect
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    limit = config.max_body_bytes

    def model_for(request) -> ServedModel:
        name = request.path_params["name"]
        model = models.get(name)
        if model is None:
            raise _Problem(404, f"unknown model '{name}'; this server has: {', '.join(sorted(models))}")
        version = request.path_params.get("version")
        if version is not None and version != model.version:
            raise _Problem(404, f"model '{name}' has no version '{version}'; it has: {model.version}")
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
            body = await asyncio.wait_for(_read_body(request, limit, config.max_body_mb), config.body_timeout_s)
        except asyncio.TimeoutError:
            # a client trickling its body holds a connection and a buffer: it gets a deadline
            raise _Problem(408, f"the request body did not arrive within {config.body_timeout_s:g} s "
                                "(--body-timeout)") from None
        _check_content_type(request.headers.get("content-type"))  # once read: the client sees the 400
        body = _decompress(body, request.headers.get("content-encoding"), limit, config.max_body_mb)
        args = (body, request.headers.get("inference-header-content-length"), session.inputs, session.outputs)
        kwargs = {"model": model.name, "max_elements": limit}
        if len(body) < PARSE_OFF_LOOP_BYTES:
            parsed = parse_infer_request(*args, **kwargs)
        else:
            parsed = await run_in_threadpool(parse_infer_request, *args, **kwargs)
        feeds = validate_feeds(parsed.feeds, session.inputs)
        results = await scheduler.run(session, feeds, [o.name for o in parsed.outputs])
        labels = session.labels if any(o.classification for o in parsed.outputs) else None
        payload, header_length = encode_infer_response(model.name, model.version, parsed.id, results,
                                                       parsed.outputs, labels)
        headers = {}
        if header_length is not None:
            headers["Inference-Header-Content-Length"] = str(header_length)
        payload = _compress(payload, request.headers.get("accept-encoding"), headers)
        media = "application/json" if header_length is None else "application/octet-stream"
        return Response(payload, headers=headers, media_type=media)

    def guarded(handler):
        async def endpoint(request):
            try:
                return await handler(request)
            except _Problem as exc:
                return _error(exc.status, str(exc))
            except ClientDisconnect:  # nobody to answer; not the server's fault either
                log.debug("client left during %s %s", request.method, request.url.path)
                return _error(400, "the client disconnected before sending the whole body")
            except ServerBusy as exc:
                return _error(503, str(exc), {"Retry-After": "1"})
            except (InputError, ConfigError) as exc:
                return _error(400, str(exc))
            except OnnxforgeError as exc:
                return _error(500, str(exc))
            except Exception as exc:  # noqa: BLE001 - the server stays up whatever one request does
                log.exception("request %s %s failed", request.method, request.url.path)
                return _error(500, f"internal error: {type(exc).__name__}: {exc}")

        return endpoint

    def route(path, handler, method="GET"):
        return Route(path, guarded(handler), methods=[method])

    routes = [
        route("/v2/health/live", healthy),
        route("/v2/health/ready", healthy),
        route("/v2", server_metadata),
        route("/v2/models/{name}", model_metadata),
        route("/v2/models/{name}/versions/{version}", model_metadata),
        route("/v2/models/{name}/ready", model_ready),
        route("/v2/models/{name}/versions/{version}/ready", model_ready),
        route("/v2/models/{name}/infer", infer, "POST"),
        route("/v2/models/{name}/versions/{version}/infer", infer, "POST"),
    ]

    async def http_error(request, exc: HTTPException):
        text = {404: f"no such endpoint: {request.method} {request.url.path}",
                405: f"{request.method} is not allowed on {request.url.path}"}.get(exc.status_code, str(exc.detail))
        return _error(exc.status_code, text, getattr(exc, "headers", None))

    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        await scheduler.close()

    app = Starlette(routes=routes, exception_handlers={HTTPException: http_error}, lifespan=lifespan)
    return _RequestLog(app)


@functools.lru_cache(maxsize=1)
def _package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("onnxforge")
    except PackageNotFoundError:
        return "0"


def _check_content_type(value: str | None) -> None:
    media = (value or "").split(";")[0].strip().lower()
    if media and media not in BODY_TYPES:
        raise InputError(f"Content-Type {value[:80]!r} is not an inference request; send application/json, "
                         f"or application/octet-stream with an Inference-Header-Content-Length header")


async def _read_body(request, limit: int, limit_mb: float) -> bytes:
    """The body, refused once it passes ``limit`` bytes; nothing past the limit is kept. A body
    over the limit is still read (and dropped) for up to :data:`DRAIN_BYTES` more, so the client
    gets the 400 instead of a reset connection; a Content-Length beyond even that is refused
    before any of the body is read."""
    raw = request.headers.get("content-length") or ""
    declared = (int(raw) if len(raw) <= 18 else 10**18) if raw.isascii() and raw.isdigit() else None
    if declared is not None and declared > limit + DRAIN_BYTES:
        raise InputError(f"the request body is {raw} bytes, over the limit of {limit_mb:g} MB (--max-body-mb)")
    keep = declared is None or declared <= limit
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if keep and size <= limit:
            chunks.append(chunk)
        elif size > limit + DRAIN_BYTES:
            break
    if size > limit or not keep:
        shown = raw if declared is not None else f"more than {size}"
        raise InputError(f"the request body is {shown} bytes, over the limit of {limit_mb:g} MB (--max-body-mb)")
    return b"".join(chunks)


def _decompress(body: bytes, encoding: str | None, limit: int, limit_mb: float) -> bytes:
    encoding = (encoding or "identity").strip().lower()
    if encoding == "identity":
        return body
    if encoding not in ("gzip", "deflate"):
        raise InputError(f"Content-Encoding {encoding!r} is not supported; send gzip, deflate or none")
    inflater = zlib.decompressobj(wbits=47)  # gzip or zlib framing, detected from the header
    try:
        out = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise InputError(f"the {encoding} body cannot be decompressed: {exc}") from None
    if len(out) > limit:
        raise InputError(f"the decompressed request body is over the limit of {limit_mb:g} MB (--max-body-mb)")
    if not inflater.eof:
        raise InputError(f"the {encoding} body is truncated")
    return out


def _compress(payload: bytes, accept: str | None, headers: dict) -> bytes:
    if not accept or len(payload) < COMPRESS_MIN_BYTES:
        return payload
    offered = {part.split(";")[0].strip().lower() for part in accept.split(",")}
    if "gzip" in offered:
        headers["Content-Encoding"] = "gzip"
        return gzip.compress(payload, compresslevel=1)
    if "deflate" in offered:
        headers["Content-Encoding"] = "deflate"
        return zlib.compress(payload, 1)
    return payload


class _RequestLog:
    """One debug-level log line per request: client, method, path, status, milliseconds."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or not log.isEnabledFor(logging.DEBUG):
            return await self.app(scope, receive, send)
        start = time.perf_counter()
        status = [0]

        async def send_and_note(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            client = scope.get("client") or ("-", 0)
            log.debug("%s:%s %s %s %d %.2f ms", client[0], client[1], scope["method"], scope["path"],
                      status[0], (time.perf_counter() - start) * 1000)


class Server:
    """An OIP v2 server over models: paths (files or folders) or ``{name: Session}``."""

    def __init__(self, models, config: ServerConfig | None = None):
        self.config = config or ServerConfig()
        _check_config(self.config)
        if isinstance(models, dict):
            self.models = {name: m if isinstance(m, ServedModel) else ServedModel(name, m)
                           for name, m in models.items()}
        else:
            self.models = _load_models(models, self.config)
        if self.config.warmup:
            for model in self.models.values():
                try:
                    model.session.warmup()
                except OnnxforgeError as exc:
                    log.warning("model '%s': warm-up skipped (%s)", model.name, exc)
        self.scheduler = Scheduler(self.config.max_concurrency, self.config.max_queue,
                                   self.config.max_batch, self.config.max_delay_ms)
        self.app = create_app(self.models, self.config, self.scheduler)
        self._uvicorn = None
        self._thread: threading.Thread | None = None
        self.address: tuple | None = None

    @property
    def url(self) -> str:
        if self.address is None:
            raise ConfigError("the server is not listening yet")
        host, port = self.address[0], self.address[1]
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    def _bind(self) -> socket.socket:
        host, port = self.config.host, self.config.port
        try:
            family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
            sock = socket.socket(family, kind, proto)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(address)
            sock.listen(2048)
        except OSError as exc:
            raise ConfigError(f"cannot listen on {host} port {port}: {exc.strerror or exc}") from None
        self.address = sock.getsockname()
        return sock

    def _make_uvicorn(self):
        import uvicorn

        config = uvicorn.Config(self.app, log_config=None, access_log=False, lifespan="on",
                                timeout_graceful_shutdown=30, timeout_keep_alive=30)
        self._uvicorn = uvicorn.Server(config)
        return self._uvicorn

    def start(self) -> str:
        """Serve on a background thread; returns the URL once it accepts connections."""
        sock = self._bind()
        server = self._make_uvicorn()
        self._thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True,
                                        name="onnxforge-serve")
        self._thread.start()
        deadline = time.monotonic() + 30
        while not server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise ConfigError("the server did not start; see the log for why")
            time.sleep(0.01)
        return self.url

    def stop(self) -> None:
        """Finish the requests in flight, then stop (for servers started with :meth:`start`)."""
        if self._uvicorn is not None:
            self._uvicorn.should_exit = True
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def run(self, on_listening=None) -> None:
        """Serve in the foreground until SIGTERM or SIGINT, then shut down cleanly."""
        sock = self._bind()
        server = self._make_uvicorn()
        if on_listening is not None:
            on_listening(self)
        # uvicorn re-raises the signal it caught after its graceful shutdown; with these handlers
        # in place that does nothing more, so the process exits normally (status 0).
        previous = {}
        if threading.current_thread() is threading.main_thread():
            previous = {sig: signal.signal(sig, lambda s, f: None) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            server.run(sockets=[sock])
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            sock.close()


def _check_config(config: ServerConfig) -> None:
    checks = [
        ("max_concurrency", config.max_concurrency, 1),
        ("max_queue", config.max_queue, 0),
        ("max_batch", config.max_batch, 1),
    ]
    for name, value, low in checks:
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ConfigError(f"{name} must be an integer of at least {low}; got {value!r}")
    if not config.max_delay_ms >= 0:
        raise ConfigError(f"max_delay_ms must be zero or more; got {config.max_delay_ms!r}")
    if not config.max_body_mb > 0:
        raise ConfigError(f"max_body_mb must be more than zero; got {config.max_body_mb!r}")
