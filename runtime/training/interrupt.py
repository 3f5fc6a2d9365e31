"""Ctrl-C during training: finish the step, save, then stop.

:class:`Interruption` replaces Python's SIGINT handler for the run's epochs (main thread only,
and only where the handler is still Python's own): the first Ctrl-C sets ``flag[0]``, which the
training loop reads after every step and answers by writing a checkpoint of that very step before
it raises ``KeyboardInterrupt``; a second Ctrl-C raises at once (the last complete checkpoint is
kept, since every checkpoint is written to a temporary name and renamed). Elsewhere (a worker
thread, a handler of the program's own) it changes nothing and the flag stays down."""

from __future__ import annotations

import signal
import threading

__all__ = ["Interruption"]


class Interruption:
    def __init__(self):
        self.flag = [False]
        self._previous = None

    def _handler(self, signum, frame):
        if self.flag[0]:  # the second Ctrl-C: stop now
            raise KeyboardInterrupt
        self.flag[0] = True

    def __enter__(self) -> "Interruption":
        if threading.current_thread() is threading.main_thread() and \
                signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            self._previous = signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None
