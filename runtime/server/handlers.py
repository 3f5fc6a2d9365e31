"""Errors to answers: every error becomes the protocol's ``{"error": "..."}`` JSON with the HTTP
status its class carries (``http_status`` in :mod:`onnxforge.runtime.errors`). The handlers are
registered per type with Starlette (:data:`EXCEPTION_HANDLERS`), so endpoints raise and never
catch; each handler only turns its exception into a response."""

from __future__ import annotations

import json
import logging
from typing import Any, Callable

from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import Response

from onnxforge.runtime.errors import OnnxforgeError, ServerBusyError

__all__ = ["error_body", "error_response", "EXCEPTION_HANDLERS"]

log = logging.getLogger("onnxforge.serve")


def error_body(message: str) -> bytes:
    # ASCII JSON: a message may quote a client's string, lone surrogates (from "\\ud800") included
    return json.dumps({"error": message}, separators=(",", ":")).encode()


def error_response(status: int, message: str, headers: dict | None = None) -> Response:
    return Response(error_body(message), status_code=status, headers=headers, media_type="application/json")


async def onnxforge_error(request, exc: OnnxforgeError) -> Response:
    """An error onnxforge raised on purpose: the status its class carries."""
    return error_response(exc.http_status, str(exc))


async def server_busy(request, exc: ServerBusyError) -> Response:
    """503 with Retry-After: the client may try again shortly."""
    return error_response(exc.http_status, str(exc), {"Retry-After": str(exc.retry_after)})


async def client_left(request, exc: ClientDisconnect) -> Response:
    """Nobody to answer; not the server's fault either."""
    log.debug("client left during %s %s", request.method, request.url.path)
    return error_response(400, "the client disconnected before sending the whole body")


async def routing_error(request, exc: HTTPException) -> Response:
    """Starlette's own: no such route (404) or method (405)."""
    text = {404: f"no such endpoint: {request.method} {request.url.path}",
            405: f"{request.method} is not allowed on {request.url.path}"}.get(exc.status_code, str(exc.detail))
    return error_response(exc.status_code, text, getattr(exc, "headers", None))


async def internal_error(request, exc: Exception) -> Response:
    """Anything else: 500 naming it, and logged; the server stays up whatever one request does."""
    log.error("request %s %s failed", request.method, request.url.path, exc_info=exc)
    return error_response(500, f"internal error: {type(exc).__name__}: {exc}")


EXCEPTION_HANDLERS: dict[Any, Callable[..., Any]] = {
    OnnxforgeError: onnxforge_error,
    ServerBusyError: server_busy,
    ClientDisconnect: client_left,
    HTTPException: routing_error,
    Exception: internal_error,
}
