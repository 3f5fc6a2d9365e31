"""An HTTP inference server speaking the Open Inference Protocol v2 (KServe / Triton REST API),
built on Starlette and served by uvicorn.

``Server(["models/"]).run()`` serves every ``.onnx`` in a folder under its file name (a training
run folder: its trained model, under the folder's name); ``Server({"name": session})`` serves
sessions an application already holds. ``start()`` runs it on a background thread (for embedding
and tests), ``run()`` in the foreground until SIGTERM or Ctrl+C, after which requests in flight are
finished before the process exits.
"""

from __future__ import annotations

import logging
import signal
import socket
import threading
import time

from onnxforge.runtime.errors import ConfigError, OnnxforgeError
from onnxforge.runtime.server.config import ServerConfig, check_config
from onnxforge.runtime.server.models import ServedModel, find_models, load_models
from onnxforge.runtime.server.protocol import protocol_for
from onnxforge.runtime.server.routes import create_app
from onnxforge.runtime.server.scheduler import Scheduler

__all__ = ["ServedModel", "Server", "ServerConfig", "find_models"]

log = logging.getLogger("onnxforge.serve")


class Server:
    """An OIP v2 server over models: paths (files or folders) or ``{name: Session}``."""

    def __init__(self, models, config: ServerConfig | None = None):
        self.config = config or ServerConfig()
        check_config(self.config)
        if isinstance(models, dict):
            self.models = {name: m if isinstance(m, ServedModel) else ServedModel(name, m)
                           for name, m in models.items()}
        else:
            self.models = load_models(models, device=self.config.device, threads=self.config.threads)
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

        config = uvicorn.Config(self.app, http=protocol_for(self.config), log_config=None, access_log=False,
                                lifespan="on", timeout_graceful_shutdown=30,
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
