"""The HTTP connection layer: uvicorn's httptools protocol with the limits a server on a network
needs, each answered with the protocol's JSON error instead of uvicorn's ``text/plain``:

- malformed HTTP gets 400 ``{"error": "malformed HTTP request: ..."}``;
- a request line and headers over ``max_header_kb`` get 431 once that much has arrived (nothing
  more of them is read);
- headers that have not arrived whole within ``header_timeout_s`` of their first byte (or of the
  connection, for one that sends nothing) get 408 and the connection is closed (slowloris);
- a kept-alive connection with no new request is closed after ``idle_timeout_s`` (uvicorn's
  keep-alive timeout);
- at most ``max_connections`` connections are held (below the process's file limit): a new one
  beyond it closes the oldest connection that is not inside a request, or, when every one is,
  gets 503 at once. So ``/v2/health/live`` keeps answering while idle and slow connections pile up.
"""

from __future__ import annotations

import asyncio
import http
import logging

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from onnxforge.runtime.server.config import ServerConfig
from onnxforge.runtime.server.handlers import error_body

__all__ = ["protocol_for"]

log = logging.getLogger("onnxforge.serve")


class _Limits:
    """The limits one server's connections share, and its connections outside any request
    (oldest first), the ones a new connection may push out."""

    def __init__(self, config: ServerConfig):
        self.max_head = config.max_header_bytes
        self.max_head_kb = config.max_header_kb
        self.head_timeout = config.header_timeout_s
        self.max_connections = config.max_connections
        self.between_requests: dict = {}  # insertion-ordered: the oldest first

    def make_room(self, newcomer) -> bool:
        """Close the oldest connection between requests; False when every one is inside one."""
        for conn in self.between_requests:
            if conn is not newcomer:
                self.between_requests.pop(conn)
                log.debug("closing an idle or slow connection from %s to make room", conn.client)
                conn.transport.close()
                return True
        return False


class GuardedProtocol(HttpToolsProtocol):
    """One HTTP connection under :class:`_Limits` (set per server by :func:`protocol_for`)."""

    limits: _Limits

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._head_bytes, self._in_head = 0, True
        self._head_timer: asyncio.TimerHandle | None = None
        if len(self.connections) > self.limits.max_connections and not self.limits.make_room(self):
            self._refuse(503, f"the server holds its limit of {self.limits.max_connections} connections, all "
                              "inside requests; retry shortly", {"retry-after": "1"})
            return
        self.limits.between_requests[self] = None
        self._arm_head_timer()

    def connection_lost(self, exc) -> None:
        self.limits.between_requests.pop(self, None)
        self._cancel_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._in_head:
            self._head_bytes += len(data)
            self._arm_head_timer()
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._refuse(400, f"malformed HTTP request: {exc or 'not HTTP/1.1'}")
            return
        except httptools.HttpParserUpgrade:
            self._unsupported_upgrade_warning()
        if self._in_head and self._head_bytes > self.limits.max_head:
            self._refuse(431, f"the request line and headers are over the limit of {self.limits.max_head_kb:g} KB "
                              "(--max-header-kb)")

    def on_headers_complete(self) -> None:
        self._in_head, self._head_bytes = False, 0
        self._cancel_head_timer()
        self.limits.between_requests.pop(self, None)
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_head = True  # what comes next is the next request's head

    def on_response_complete(self) -> None:
        had_next = bool(self.pipeline)  # a pipelined request starts now: still inside one
        super().on_response_complete()  # arms uvicorn's keep-alive (idle) timeout
        if not had_next and not self.transport.is_closing():
            self.limits.between_requests[self] = None

    def _arm_head_timer(self) -> None:
        if self._head_timer is None and not self.transport.is_closing():
            self._head_timer = self.loop.call_later(self.limits.head_timeout, self._head_too_slow)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_too_slow(self) -> None:
        self._head_timer = None
        if self._head_bytes:
            self._refuse(408, f"the request line and headers did not arrive within {self.limits.head_timeout:g} s "
                              "(--header-timeout)")
        else:
            self.transport.close()

    def _refuse(self, status: int, message: str, headers: dict | None = None) -> None:
        """Answer ``status`` with the JSON error and close, unless a response already began."""
        self._cancel_head_timer()
        self.limits.between_requests.pop(self, None)
        if self.transport.is_closing():
            return
        log.debug("%s: %d %s", self.client, status, message)
        if self.cycle is None or not self.cycle.response_started:
            body = error_body(message)
            lines = [f"HTTP/1.1 {status} {http.HTTPStatus(status).phrase}", "content-type: application/json",
                     f"content-length: {len(body)}", "connection: close",
                     *(f"{k}: {v}" for k, v in (headers or {}).items())]
            self.transport.write("\r\n".join(lines).encode("ascii") + b"\r\n\r\n" + body)
        if self.cycle is not None:
            self.cycle.keep_alive = False
        self.transport.close()


def protocol_for(config: ServerConfig) -> type:
    """A :class:`GuardedProtocol` class with one server's limits, for ``uvicorn.Config(http=...)``."""
    return type("GuardedProtocol", (GuardedProtocol,), {"limits": _Limits(config)})
