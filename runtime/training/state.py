"""Where a run stands: one object the :class:`~.trainer.Trainer` owns, a checkpoint keeps and a
resume (:func:`.resume.start_run`, a data-parallel driver adopting its workers' run) hands back.

Nothing else holds the run's progress: the Trainer's ``epoch``, ``step`` and ``history`` read it."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from onnxforge.runtime.errors import CheckpointError

__all__ = ["TrainingState"]


@dataclass
class TrainingState:
    epoch: int = 0                                          # epochs finished
    step: int = 0                                           # optimizer steps taken
    history: list[dict[str, Any]] = field(default_factory=list)  # one record per finished epoch
    record: dict[str, Any] | None = None                    # the run's settings as recorded; None: no run started
    schedule_epochs: int = 0                                # the epochs the learning-rate schedule is laid out over
    # a Ctrl-C checkpoint made mid-epoch: steps of the next epoch already done, and their (loss sum, examples)
    epoch_step: int = 0
    epoch_loss: tuple[float, int] = (0.0, 0)

    @property
    def started(self) -> bool:
        """A run began (or was resumed): the backend holds its weights."""
        return self.record is not None

    def take_within_epoch(self) -> tuple[int, tuple[float, int]]:
        """The next epoch's steps already done and their loss (a mid-epoch resume), then none."""
        within = self.epoch_step, self.epoch_loss
        self.epoch_step, self.epoch_loss = 0, (0.0, 0)
        return within

    def checkpoint_properties(self, rng_state: dict[str, Any], epoch_step: int = 0,
                              epoch_loss: tuple[float, int] = (0.0, 0)) -> dict[str, Any]:
        """What a checkpoint stores besides the weights: the progress, the data order's RNG (for a
        save mid-epoch, ``epoch_step`` > 0: the epoch's starting order and how far it got), the record."""
        props = {"epoch": int(self.epoch), "step": int(self.step), "rng": json.dumps(rng_state),
                 "config": json.dumps(self.record, sort_keys=True), "history": json.dumps(self.history)}
        if epoch_step:
            props.update(epoch_step=str(epoch_step), epoch_loss=json.dumps(list(epoch_loss)))
        return props

    @classmethod
    def from_checkpoint(cls, props: dict[str, Any], path: Path, *, record: dict[str, Any] | None = None,
                        history: list[dict[str, Any]] | None = None) -> TrainingState:
        """The state a checkpoint's ``props`` hold. ``record``: the run's settings (default: the
        checkpoint's own); ``history``: the epochs' records where the checkpoint keeps none."""
        try:
            epoch, step = int(props["epoch"]), int(props["step"])
            kept = json.loads(props["history"]) if "history" in props else list(history or [])
            record = json.loads(props["config"]) if record is None else record
            epoch_step, (loss_sum, seen) = 0, (0.0, 0)
            if "epoch_step" in props:  # saved by Ctrl-C mid-epoch: the RNG is the epoch's start, these steps done
                epoch_step, (loss_sum, seen) = int(props["epoch_step"]), json.loads(props["epoch_loss"])
        except (KeyError, ValueError, TypeError):
            raise CheckpointError(f"checkpoint '{path}' lacks the run's progress (epoch, step, RNG)") from None
        planned = int(record.get("schedule_epochs") or record.get("epochs") or 0)
        return cls(epoch, step, kept[:epoch], record, planned, epoch_step, (float(loss_sum), int(seen)))
