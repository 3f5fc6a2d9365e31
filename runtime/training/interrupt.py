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
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the Trainer imports this module
    from onnxforge.runtime.training.epochs import EpochIterator
    from onnxforge.runtime.training.trainer import Trainer

__all__ = ["Interruption", "save_interrupted"]


class Interruption:
    def __init__(self) -> None:
        self.flag = [False]
        self._previous: Any = None

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


def save_interrupted(trainer: Trainer, batches: EpochIterator, epoch_rng: dict | None, epoch_step: int,
                     epoch_loss: tuple[float, int]) -> None:
    """Ctrl-C: write the checkpoint of this very step (mid-epoch: the epoch's starting data order
    ``epoch_rng`` and how far it got, so ``--resume`` continues with the next batch), note what it
    holds in ``trainer.interrupted`` and end the run with KeyboardInterrupt."""
    trainer.save_checkpoint(batches, epoch_rng, epoch_step, epoch_loss)
    if not epoch_step:
        trainer.export()
        trainer.write_metrics()
    trainer.interrupted = {"epoch": trainer.epoch + (1 if epoch_step else 0), "epoch_step": epoch_step or None,
                           "epoch_steps": batches.steps, "step": trainer.step, "epochs_done": trainer.epoch}
    raise KeyboardInterrupt
