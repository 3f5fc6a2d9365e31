"""An HTTP inference server speaking the Open Inference Protocol v2 (KServe / Triton REST API),
built on Starlette and served by uvicorn.

``Server(["models/"]).run()`` serves a model repository (:mod:`.repository`: Triton's layout,
``.onnx`` files, run folders); ``Server({"name": session})`` serves sessions an application
already holds. ``start()`` runs it on a background thread (for embedding and tests), ``run()`` in
the foreground until SIGTERM or Ctrl+C, after which requests in flight are finished before the
process exits. ``ServerConfig(watch=True)`` swaps changed model files in (:mod:`.watch`),
``grpc_port`` adds the protocol's gRPC service (:mod:`.grpc`), ``/metrics`` counts it all.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import threading
import time

from onnxforge.runtime.errors import ConfigError
from onnxforge.runtime.server.adapters import AdapterServing
from onnxforge.runtime.server.access import Access
from onnxforge.runtime.server.config import ServerConfig, check_config
from onnxforge.runtime.server.deadlines import Runs
from onnxforge.runtime.server.grpc.service import GrpcServer, Servicer
from onnxforge.runtime.server.infer import Engine
from onnxforge.runtime.server.metrics import Metrics
from onnxforge.runtime.server.models import ServedModel, find_models
from onnxforge.runtime.server.protocol import protocol_for
from onnxforge.runtime.server.repository import Repository
from onnxforge.runtime.server.routes import create_app, server_info
from onnxforge.runtime.server.scheduler import Scheduler
from onnxforge.runtime.server.watch import Watcher

__all__ = ["ServedModel", "Server", "ServerConfig", "find_models"]

log = logging.getLogger("onnxforge.serve")


class Server:
    """An OIP v2 server over models: paths (files or folders) or ``{name: Session}``."""

    def __init__(self, models, config: ServerConfig | None = None):
        self.config = config or ServerConfig()
        check_config(self.config)
        cfg = self.config
        self.adapters = None  # --adapters: one base model and its adapter folder
        if cfg.adapters is not None:
            if isinstance(models, dict):
                raise ConfigError("adapters= serves model files (one base model), not sessions")
            self.adapters = AdapterServing(models, cfg.adapters, device=cfg.device, threads=cfg.threads)
            models = {self.adapters.name: self.adapters.model}
        if isinstance(models, dict):
            given = {name: m if isinstance(m, ServedModel) else ServedModel(name, m) for name, m in models.items()}
            self.repository = Repository(models=given, warmup_timeout_s=cfg.warmup_timeout_s)
            for model in given.values():
                if cfg.warmup:
                    self.repository.warm(model)
        else:
            self.repository = Repository(models, device=cfg.device, threads=cfg.threads, warmup=cfg.warmup,
                                         warmup_timeout_s=cfg.warmup_timeout_s)
        self.metrics = Metrics()
        self.scheduler = Scheduler(cfg.max_concurrency, cfg.max_queue, cfg.max_batch, cfg.max_delay_ms,
                                   Runs(cfg.warmup_timeout_s, cfg.run_timeout_s))
        self.scheduler.on_wait = self.metrics.queue_wait.observe
        self.scheduler.on_batch = self.metrics.batch_rows.observe
        self.engine = Engine(self.scheduler, cfg)
        if self.adapters is not None:
            self.adapters.count_into(self.metrics.registry)
        for model in self.repository.all_models():  # loaded before anyone listened
            self.metrics.on_repository("load", None, model)
        self.repository.listeners.append(self.metrics.on_repository)
        self.repository.listeners.append(self._retire)
        watch_files = cfg.watch and self.adapters is None  # with --adapters, --watch watches the adapter folder
        self.watcher = Watcher(self.repository, cfg.watch_interval_s, self.metrics.on_watch) if watch_files else None
        self.grpc = GrpcServer(Servicer(self.repository, self.engine, self.metrics, server_info, Access(cfg)), cfg) \
            if cfg.grpc_port is not None else None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: list = []
        self.app = create_app(self.repository, cfg, self.engine, self.metrics, [self._on_start], [self._on_stop])
        self._uvicorn = None
        self._thread: threading.Thread | None = None
        self.address: tuple | None = None

    @property
    def models(self) -> dict[str, ServedModel]:
        """``{name: newest version}`` of the models served now."""
        return self.repository.latest()

    @property
    def grpc_address(self) -> str:
        """``host:port`` of the gRPC service (once started)."""
        if self.grpc is None or self.grpc.port is None:
            raise ConfigError("the server has no gRPC service listening (start it with grpc_port)")
        host = self.address[0] if self.address else self.config.host
        return f"[{host}]:{self.grpc.port}" if ":" in host else f"{host}:{self.grpc.port}"

    async def _on_start(self) -> None:
        self._loop = asyncio.get_running_loop()
        if self.grpc is not None:
            await self.grpc.start()
        if self.watcher is not None:
            self._tasks.append(self._loop.create_task(self.watcher.run()))
        if self.adapters is not None and self.config.watch:
            self._tasks.append(self._loop.create_task(self.adapters.watch(self.config.watch_interval_s)))

    async def _on_stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self.grpc is not None:
            await self.grpc.stop()

    def _retire(self, event: str, old, new) -> None:
        """A replaced or unloaded session's batcher is let go, on the event loop."""
        if old is not None and self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self.scheduler.retire, old.session)

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

        config = uvicorn.Config(self.app, http=protocol_for(self.config), log_config=None, access_log=False,
                                lifespan="on", timeout_graceful_shutdown=self.config.shutdown_timeout_s,
                                timeout_keep_alive=self.config.idle_timeout_s)
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
