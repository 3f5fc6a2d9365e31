"""Who may ask what: the checks made before any work is done for a request.

- Repository control (``POST /v2/repository/models/NAME/load`` and ``/unload``, and gRPC's
  ``RepositoryModelLoad``/``Unload``) is off unless the server is started with
  ``repository_control`` (``--repository-control``), as Triton refuses it unless started with
  ``--model-control-mode=explicit``; with ``repository_token`` a call must also carry
  ``Authorization: Bearer TOKEN`` (gRPC: the ``authorization`` metadata). Off: 403; a missing or
  wrong token: 401.
- Host: a server bound to a loopback address answers only requests whose ``Host`` names a
  loopback address or ``localhost`` (or a name in ``allowed_hosts``), so a web page whose name
  re-resolves to 127.0.0.1 (DNS rebinding) is refused; ``allowed_hosts`` makes any server check.
- Origin: a request that a browser marks with an ``Origin`` is answered only when that origin is
  the server's own (the origin's host and port are the request's ``Host``, itself accepted) or in
  ``allowed_origins``: other sites' pages are refused (403) before the request is read.
"""

from __future__ import annotations

import functools
import hmac
import ipaddress

from onnxforge.runtime.errors import ForbiddenError, UnauthorizedError
from onnxforge.runtime.server.handlers import error_body

__all__ = ["Access", "Guard", "is_loopback", "host_name"]


@functools.lru_cache(maxsize=256)  # asked on every request; a client's Host header is one of a few
def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or address, IPv6 with or without brackets) is this machine only."""
    name = host.strip().lower().rstrip(".").strip("[]")
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def host_name(value: str) -> str:
    """The host of a ``Host`` header or an authority (``name:port``, ``[::1]:8000``), lowercased."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1 : value.find("]")] if "]" in value else value[1:]
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


class Access:
    """The access checks of one server's configuration (see the module docstring)."""

    def __init__(self, config):
        self.control = bool(config.repository_control)
        self.token = config.repository_token or None
        self.hosts = {h.strip().lower().rstrip(".") for h in config.allowed_hosts}
        self.origins = {o.strip().lower().rstrip("/") for o in config.allowed_origins}
        self.check_hosts = is_loopback(config.host) or bool(self.hosts)

    # -- repository control ----------------------------------------------------------------------
    def control_allowed(self, authorization: str | None, what: str) -> None:
        """Raise unless ``what`` (a load or unload) may be done with this ``Authorization`` value."""
        if not self.control:
            raise ForbiddenError(f"{what} is refused: repository control is off on this server (start it with "
                                 "--repository-control to allow loading and unloading models)")
        if self.token is None:
            return
        given = (authorization or "").strip()
        scheme, _, credential = given.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(credential.strip().encode(), self.token.encode()):
            raise UnauthorizedError(f"{what} needs the repository token: send 'Authorization: Bearer <token>' "
                                    "(the server's --repository-token)")

    # -- Host and Origin -------------------------------------------------------------------------
    def host_allowed(self, host: str | None) -> None:
        if not self.check_hosts or host is None:
            return
        name = host_name(host).rstrip(".")
        if "*" in self.hosts or name in self.hosts or is_loopback(name):
            return
        raise ForbiddenError(f"Host '{host[:100]}' is not served here: this server answers requests to its own "
                             "loopback address or localhost (name others with --allow-host)")

    def origin_allowed(self, origin: str | None, host: str | None) -> None:
        if origin is None:
            return
        shown = origin.strip().lower().rstrip("/")
        if "*" in self.origins or shown in self.origins:
            return
        if host is not None and _same_origin(shown, host.strip().lower()):
            return  # the server's own origin: a page it served, or a same-origin proxy
        raise ForbiddenError(f"Origin '{origin[:100]}' may not call this server: requests from other sites' pages are "
                             "refused (name trusted origins with --allow-origin)")


def _same_origin(origin: str, host: str) -> bool:
    scheme, sep, netloc = origin.partition("://")
    if not sep or scheme not in ("http", "https") or not netloc or any(c in netloc for c in "/?#@"):
        return False
    default = {"http": "80", "https": "443"}[scheme]  # either side may leave the default port out
    return host in (netloc, f"{netloc}:{default}") or netloc == f"{host}:{default}"


class Guard:
    """ASGI middleware: every HTTP request's Host and Origin checked before the app sees it."""

    def __init__(self, app, access: Access):
        self.app, self.access = app, access

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            headers = {}
            for key, value in scope.get("headers") or ():
                if key in (b"host", b"origin"):
                    headers.setdefault(key, value.decode("latin-1"))
            try:
                self.access.host_allowed(headers.get(b"host"))
                self.access.origin_allowed(headers.get(b"origin"), headers.get(b"host"))
            except ForbiddenError as exc:
                await send({"type": "http.response.start", "status": exc.http_status,
                            "headers": [(b"content-type", b"application/json"), (b"connection", b"close")]})
                await send({"type": "http.response.body", "body": error_body(str(exc))})
                return
        await self.app(scope, receive, send)
