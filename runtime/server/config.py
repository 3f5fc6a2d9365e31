"""How the server listens and what it accepts: :class:`ServerConfig`, the ``onnxforge serve`` options."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from onnxforge.runtime.errors import ConfigError

__all__ = ["ServerConfig", "check_config", "default_max_connections", "usable_cores"]

FD_HEADROOM = 64  # file descriptors kept free for models, logs and the listening socket


def usable_cores() -> int:
    """The cores this process may run on (``taskset``, a container's cpuset), not the machine's."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):  # no affinity on this platform
        return os.cpu_count() or 1


def default_max_connections() -> int:
    """Open connections the server holds at most: below the process's file limit (so accept()
    never fails for want of a descriptor), at most 4096."""
    try:
        import resource
    except ImportError:  # Windows: no file limit to read
        return 1024
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft == resource.RLIM_INFINITY:
        return 4096
    return max(8, min(4096, soft - FD_HEADROOM))


@dataclass(frozen=True)
class ServerConfig:
    """How the server listens and behaves under load (the ``onnxforge serve`` options)."""

    host: str = "127.0.0.1"
    port: int = 8000
    device: str = "auto"
    threads: int | None = None
    max_concurrency: int = field(default_factory=lambda: usable_cores())
    max_queue: int = 256
    max_batch: int = 1
    max_delay_ms: float = 2.0
    max_body_mb: float = 64.0
    body_timeout_s: float = 30.0  # a request body must arrive whole within this (slow clients)
    max_header_kb: float = 64.0  # request line and headers together; more get 431
    header_timeout_s: float = 10.0  # request line and headers must arrive within this; else 408
    idle_timeout_s: float = 30.0  # a kept-alive connection with no new request is closed after this
    max_connections: int = field(default_factory=default_max_connections)
    warmup: bool = True
    watch: bool = False  # load changed and new model files while serving (--watch)
    watch_interval_s: float = 1.0  # how often --watch looks at the model folders
    grpc_port: int | None = None  # also serve the protocol's gRPC service on this port (0: a free one)
    repository_control: bool = False  # allow load/unload (--repository-control); off: 403
    repository_token: str | None = None  # with control: load/unload need "Authorization: Bearer TOKEN"
    allowed_hosts: tuple = ()  # Host names answered besides loopback ones (--allow-host; "*": any)
    allowed_origins: tuple = ()  # browser origins answered besides the server's own (--allow-origin)
    warmup_timeout_s: float = 60.0  # a model's warm-up (its first run) must end within this, else refused
    shutdown_timeout_s: float = 30.0  # on SIGTERM, requests in flight get this long; runs still going are stopped
    run_timeout_s: float | None = None  # a request's model run is stopped past this (--run-timeout); None: no limit
    adapters: str | None = None  # serve the one base model with every DIR/NAME.onnx_adapter (see .adapters)

    @property
    def max_body_bytes(self) -> int:
        return int(self.max_body_mb * 1024 * 1024)

    @property
    def max_header_bytes(self) -> int:
        return int(self.max_header_kb * 1024)


def check_config(config: ServerConfig) -> None:
    """Raise :class:`ConfigError` naming the first setting out of its range."""
    checks = [
        ("max_concurrency", config.max_concurrency, 1),
        ("max_queue", config.max_queue, 0),
        ("max_batch", config.max_batch, 1),
        ("max_connections", config.max_connections, 2),
    ]
    for name, value, low in checks:
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ConfigError(f"{name} must be an integer of at least {low}; got {value!r}")
    if not config.max_delay_ms >= 0:
        raise ConfigError(f"max_delay_ms must be zero or more; got {config.max_delay_ms!r}")
    port = config.grpc_port
    if port is not None and (isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535):
        raise ConfigError(f"grpc_port must be a port number from 0 to 65535; got {port!r}")
    token = config.repository_token
    if token is not None:
        if not isinstance(token, str) or not token.strip() or not token.isascii() or not token.isprintable():
            raise ConfigError("repository_token must be a non-empty string of printable ASCII characters")
        if not config.repository_control:
            raise ConfigError("a repository token (--repository-token or ONNXFORGE_REPOSITORY_TOKEN) is given but "
                              "repository control is off; add --repository-control")
    run_timeout = config.run_timeout_s
    if run_timeout is not None and (isinstance(run_timeout, bool) or not isinstance(run_timeout, (int, float))
                                    or not run_timeout > 0):
        raise ConfigError(f"run_timeout_s must be more than zero (or None: no limit); got {run_timeout!r}")
    for name in ("allowed_hosts", "allowed_origins"):
        value = getattr(config, name)
        if isinstance(value, str) or not all(isinstance(v, str) and v.strip() for v in value):
            raise ConfigError(f"{name} must be a list of non-empty names; got {value!r}")
    for name in ("max_body_mb", "body_timeout_s", "max_header_kb", "header_timeout_s", "idle_timeout_s",
                 "watch_interval_s", "warmup_timeout_s", "shutdown_timeout_s"):
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise ConfigError(f"{name} must be more than zero; got {value!r}")
