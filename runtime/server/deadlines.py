"""Deadlines on model runs: a model that never finishes never holds the server.

A run is given ONNX Runtime's ``RunOptions``; when its deadline passes (or the server closes)
its ``terminate`` flag is set and ONNX Runtime stops it between kernels and loop iterations.

- :func:`warm_within`: a model's warm-up (its first run, on zeros) on a daemon thread, refused
  with :class:`RunTimeoutError` when it passes ``warmup_timeout_s``; a stuck warm-up never holds a
  later swap, ``--watch``'s next look, or the process's exit.
- :class:`Runs`: request runs; a session's first run gets the warm-up's budget (with
  ``--no-warmup`` it is the model's first run), later runs ``run_timeout_s`` (none by default);
  :meth:`Runs.stop_all` stops every run still going when the server shuts down.
"""

from __future__ import annotations

import threading
import weakref

from onnxforge.runtime.errors import OnnxforgeError, RunTimeoutError, ServerBusyError
from onnxforge.runtime.inference.session import Session, stoppable
from onnxforge.runtime.ort.distribution import ort

__all__ = ["Runs", "warm_within", "STOP_GRACE_S"]

STOP_GRACE_S = 5.0  # how long a stopped run is given to return


def _options():
    return ort().RunOptions()


def warm_within(session, seconds: float, name: str) -> None:
    """``session.warmup()`` within ``seconds``: raises what it raised, or :class:`RunTimeoutError`."""
    options = _options()
    outcome: list = []

    def work():
        try:
            if isinstance(session, Session):
                session.warmup(run_options=options)
            else:  # an application's own session object: warmed as it is (it cannot be stopped)
                session.warmup()
            outcome.append(None)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            outcome.append(exc)

    thread = threading.Thread(target=work, daemon=True, name=f"onnxforge-warmup-{name}")
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        options.terminate = True
        thread.join(STOP_GRACE_S)
        raise RunTimeoutError(f"model '{name}': its warm-up (one run on zeros) did not end within {seconds:g} s "
                         "(--warmup-timeout); it was stopped and the model is not served")
    if outcome and isinstance(outcome[0], BaseException):
        raise outcome[0]


class Runs:
    """Request runs under deadlines (see the module docstring); one per server."""

    def __init__(self, first_run_s: float | None, run_timeout_s: float | None):
        self.first_run_s, self.run_timeout_s = first_run_s, run_timeout_s
        self._ran: weakref.WeakSet = weakref.WeakSet()
        self._active: set = set()
        self._lock = threading.Lock()
        self.closing = False

    def run(self, session, feeds: dict, outputs: list[str]) -> dict:
        """``session.run(feeds, outputs)`` under its deadline (call on a worker thread)."""
        return self.call(session, session.run, feeds, outputs)

    def call(self, session, fn, *args):
        """``fn(*args)``, whose runs of ``session`` (through ``run``, ``predict``, decoding) are
        stopped past the deadline (call on a worker thread)."""
        try:
            first = session not in self._ran
        except TypeError:  # a session that cannot be weakly referenced: no first-run budget
            first = False
        limit = self.first_run_s if first else self.run_timeout_s
        options = _options()
        with self._lock:
            if self.closing:
                raise ServerBusyError("the server is shutting down")
            self._active.add(options)
        timer = None
        if limit is not None:
            timer = threading.Timer(limit, setattr, (options, "terminate", True))
            timer.daemon = True
            timer.start()
        try:
            with stoppable(options):  # onnxforge's sessions run with these options on this thread
                result = fn(*args)
        except OnnxforgeError:
            if not options.terminate:
                raise
            if self.closing:
                raise ServerBusyError("the server is shutting down; the run was stopped") from None
            which = "first run (--warmup-timeout)" if first else "run (--run-timeout)"
            raise RunTimeoutError(f"the model's {which} did not end within {limit:g} s; it was stopped") from None
        finally:
            if timer is not None:
                timer.cancel()
            with self._lock:
                self._active.discard(options)
        try:
            self._ran.add(session)
        except TypeError:
            pass
        return result

    @property
    def active(self) -> int:
        """Runs in progress now."""
        return len(self._active)

    def stop_all(self) -> None:
        """Stop every run in progress (the server is shutting down)."""
        with self._lock:
            self.closing = True
            for options in self._active:
                options.terminate = True
