"""What happens around the steps, one job per callback (Keras's callbacks are the model).

The loop calls, in order: ``on_train_begin(trainer)``, then per epoch ``on_epoch_begin(epoch,
epochs)``, ``on_step(step, loss)`` after every step (only for callbacks that override it: it is
the hot path), ``on_epoch_end(record)``, and ``on_train_end()`` however the run ends.
:class:`Checkpointing` comes first, so the others' ``on_epoch_end`` runs after the epoch's
checkpoint, model.onnx and metrics.json are written, on the epochs its policy saves."""

from __future__ import annotations

import math
import sys
import time

from onnxforge.runtime.errors import TrainingError

__all__ = ["Callback", "CallbackList", "standard_callbacks", "TerminateOnNaN", "Checkpointing", "ProgressBar", "EpochLines",
           "EpochHook", "format_record"]


def format_record(record: dict) -> str:
    """One readable line for an epoch record: losses, metrics, then speed."""
    parts = []
    for key, value in record.items():
        if key in ("epoch", "seconds", "cpu_seconds", "lr", "steps_per_s") or not isinstance(value, (int, float)):
            continue
        shown = f"{value:.2%}" if key.endswith("accuracy") or key.endswith("exact_match") else f"{value:.4f}"
        parts.append(f"{key} {shown}")
    if record.get("steps_per_s"):
        parts.append(f"{record['steps_per_s']:,.0f} steps/s")
    return "  ".join(parts)


class Callback:
    def on_train_begin(self, trainer) -> None: ...

    def on_epoch_begin(self, epoch: int, epochs: int) -> None: ...

    def on_step(self, step: int, loss: float) -> None: ...

    def on_epoch_end(self, record: dict) -> None: ...

    def on_train_end(self) -> None: ...


class CallbackList(Callback):
    def __init__(self, callbacks):
        self.callbacks = list(callbacks)
        # only overriders are called per step
        self.step_hooks = [c.on_step for c in self.callbacks if type(c).on_step is not Callback.on_step]

    def on_train_begin(self, trainer):
        for c in self.callbacks:
            c.on_train_begin(trainer)

    def on_epoch_begin(self, epoch, epochs):
        for c in self.callbacks:
            c.on_epoch_begin(epoch, epochs)

    def on_epoch_end(self, record):
        for c in self.callbacks:
            c.on_epoch_end(record)

    def on_train_end(self):
        for c in self.callbacks:
            c.on_train_end()


class TerminateOnNaN(Callback):
    """Stop the run when the loss is NaN or Inf; the last good checkpoint stays on disk."""

    def on_train_begin(self, trainer):
        self.lr = trainer.config.lr

    def on_epoch_begin(self, epoch, epochs):
        self.epoch = epoch

    def on_step(self, step, loss):
        if not math.isfinite(loss):
            raise TrainingError(f"training diverged: the loss became {loss} at epoch {self.epoch}, step {step}; "
                                f"lower the learning rate (now {self.lr}). The last good checkpoint is kept.")


class Checkpointing(Callback):
    """Keras's BackupAndRestore with its ``save_freq``: after the epochs ``policy`` (a
    :class:`~.config.CheckpointPolicy`) chooses, and always after the run's last, the trainer
    writes the checkpoint (weights, optimizer state, data order of ``batches``), model.onnx and
    metrics.json of that epoch; between them nothing is written. A kill loses the work since the
    last save; ``--resume`` continues from it to the weights an uninterrupted run reaches."""

    def __init__(self, policy, batches):
        self.policy, self.batches = policy, batches

    def on_train_begin(self, trainer):
        self.trainer, self.epochs = trainer, trainer.config.epochs
        self.saved_at = time.monotonic()  # the run's first checkpoint was just written (or resumed from)

    def on_epoch_end(self, record):
        if self.policy.due(record["epoch"], self.epochs, time.monotonic() - self.saved_at):
            trainer = self.trainer
            trainer.save_checkpoint(self.batches)
            trainer.export()
            trainer.write_metrics()
            self.saved_at = time.monotonic()


class ProgressBar(Callback):
    """One bar on stderr for the whole run (steps of all epochs), redrawn every 16 steps."""

    def on_train_begin(self, trainer):
        from tqdm.auto import tqdm

        self.trainer = trainer
        self.bar = tqdm(total=trainer.total_steps, initial=trainer.step, unit="step", file=sys.stderr,
                        mininterval=0.25, dynamic_ncols=True, leave=False)
        self.loss_sum = self.seen = 0

    def on_epoch_begin(self, epoch, epochs):
        self.bar.set_description(f"epoch {epoch}/{epochs}", refresh=False)
        self.loss_sum = self.seen = 0

    def on_step(self, step, loss):
        self.loss_sum += loss
        self.seen += 1
        if step % 16 == 0:  # the bar redraws at most every 0.25 s anyway
            self.bar.update(step - self.bar.n)
            self.bar.set_postfix(loss=f"{self.loss_sum / self.seen:.4f}", refresh=False)

    def on_epoch_end(self, record):
        self.bar.update(self.trainer.step - self.bar.n)

    def on_train_end(self):
        self.bar.close()


class EpochLines(Callback):
    """``epoch 3/10  loss 0.4120  val_accuracy 91.20%  9,500 steps/s`` on stderr, above any bar."""

    def on_epoch_begin(self, epoch, epochs):
        self.epochs = epochs

    def on_epoch_end(self, record):
        from tqdm.auto import tqdm

        tqdm.write(f"epoch {record['epoch']}/{self.epochs}  " + format_record(record), file=sys.stderr)


class EpochHook(Callback):
    """A user's ``callback(record)`` after each epoch (``fit(callback=...)``)."""

    def __init__(self, fn):
        self.fn = fn

    def on_epoch_end(self, record):
        self.fn(record)


def standard_callbacks(progress, callback=None, extra=(), checkpointing: Checkpointing | None = None) -> CallbackList:
    """``checkpointing`` first (the files are written before anyone hears of the epoch); NaN stop;
    with ``progress`` the bar (and, unless it is "bar", the epoch lines); ``extra`` callbacks; the
    user's ``callback(record)`` last."""
    hooks = [*([checkpointing] if checkpointing is not None else []), TerminateOnNaN()]
    if progress:
        hooks.append(ProgressBar())
    if progress and progress != "bar":
        hooks.append(EpochLines())
    return CallbackList([*hooks, *extra, *([EpochHook(callback)] if callback is not None else [])])
