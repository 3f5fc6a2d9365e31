"""What ``--resume`` may continue, and with which settings.

The run folder keeps the run's settings; options given again must agree with them (each that
differs is named). ``epochs`` may change, by this rule: the learning-rate schedule stays laid out
over the epochs the run was started with (``schedule_epochs``), so the steps already taken keep
their rates and a resumed run reaches what an uninterrupted one does. A ``constant`` schedule
therefore continues for any number of epochs; a ``linear`` or ``cosine`` one (which reaches 0 at
its last epoch) may stop earlier but not run longer."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from onnxforge.runtime.errors import CheckpointError
from onnxforge.runtime.training.config import RESUMED_KEYS, RunConfig
from onnxforge.runtime.training.epochs import EpochIterator
from onnxforge.runtime.training.run_folder import RunFolder
from onnxforge.runtime.training.state import TrainingState

if TYPE_CHECKING:  # the Trainer imports this module
    from onnxforge.runtime.training.trainer import Trainer

__all__ = ["ResumeState", "resume_state", "start_run", "recorded_options"]


@dataclass
class ResumeState:
    config: RunConfig          # the run's settings with the given ones laid over
    history: list
    schedule_epochs: int


def _shown(key: str, value) -> str:
    return f"{key}={value!r}"


def _saved(folder: RunFolder) -> dict:
    if not folder.path.is_dir():
        raise CheckpointError(f"--resume: run folder '{folder}' does not exist, so it holds no run to continue; "
                              "start the run without --resume")
    if not folder.has_checkpoint():
        if folder.is_empty():
            raise CheckpointError(f"--resume: run folder '{folder}' holds no run to continue; start the run without --resume")
        raise CheckpointError(f"--resume: run folder '{folder}' holds no checkpoint to continue (the run was stopped "
                              "before its first checkpoint was written; start it again with --overwrite)")
    return folder.read_metrics()


def resume_state(folder: RunFolder, given: dict | None, now: dict | None = None, saved: dict | None = None) -> ResumeState:
    """Check that the run in ``folder`` can be resumed with the ``given`` options (a dict of the
    ones the user set again) or the full record ``now``; ``saved``: the run's record if the caller
    read it from the checkpoint (else metrics.json's)."""
    doc = _saved(folder)
    record = saved if saved is not None else (doc.get("config") or {})
    history = doc.get("history") or []
    if now is None:
        now = dict(given or {})
    changed = [k for k in RESUMED_KEYS if k in now and k in record and record[k] != now[k]
               and not (k in ("backend", "loss") and now[k] == "auto")]
    if changed:
        raise CheckpointError(
            f"--resume: the run in '{folder}' was started with {', '.join(_shown(k, record.get(k)) for k in changed)}, "
            f"now {', '.join(_shown(k, now.get(k)) for k in changed)}; options given again must agree "
            "(leave them out to keep the run's), or use another --out")
    planned = int(record.get("schedule_epochs") or record.get("epochs") or 0)
    epochs = now.get("epochs", record.get("epochs"))
    schedule = record.get("schedule", "constant")
    if planned and epochs and epochs > planned and schedule != "constant":
        raise CheckpointError(
            f"--resume: the run's {schedule} learning-rate schedule is laid out over its {planned} epochs; "
            f"--epochs {epochs} would change it for the steps already taken; resume with --epochs {planned} or "
            "fewer, or start a new run")
    config = RunConfig.from_record({k: v for k, v in record.items() if k != "loss" or v is not None}, **(given or {}))
    return ResumeState(config, history, planned or config.epochs)


def recorded_options(folder: RunFolder, given: dict) -> tuple[Path, dict, dict]:
    """What :meth:`Trainer.from_run <.trainer.Trainer.from_run>` builds from the run in ``folder``:
    its source, the Trainer's options (recorded ones under the ``given`` ones, which must agree with
    them; ``epochs`` may change, see :func:`resume_state`) and ``fit``'s settings as recorded."""
    state = resume_state(folder, given)
    fit_keys = ("epochs", "batch_size", "shuffle")
    options = {k: getattr(state.config, k) for k in ("loss", "optimizer", "lr", "weight_decay", "schedule",
                                                      "warmup_steps", "freeze", "seed", "backend", "lora")}
    options.update({k: v for k, v in given.items() if k not in fit_keys})
    return folder.source, options, {k: getattr(state.config, k) for k in fit_keys}


def start_run(trainer: Trainer, record: dict, batches: EpochIterator, state: ResumeState | None,
              overwrite: bool) -> TrainingState:
    """Start the run of ``trainer`` in its held run folder and return where it stands: continued from
    the checkpoint (``state`` from :func:`resume_state`; the backend holds the checkpoint's weights,
    ``batches`` its data order) or afresh (the backend prepared, the source written)."""
    run = trainer.run
    if state is not None:
        run.verify(trust_unrecorded=trainer.trust_checkpoint)
        trainer.prepare_backend()
        props = trainer.backend.load_checkpoint(run.checkpoint)
        progress = TrainingState.from_checkpoint(props, run.checkpoint, history=state.history,
                                                 record={**record, "schedule_epochs": state.schedule_epochs})
        try:
            batches.set_rng_state(json.loads(props["rng"]))
        except (KeyError, ValueError, TypeError):
            raise CheckpointError(f"checkpoint '{run.checkpoint}' lacks the run's progress (epoch, step, RNG)") from None
        return progress
    if run.has_checkpoint() and not overwrite:
        raise CheckpointError(f"run folder '{trainer.rundir}' already holds a checkpoint; pass --resume to continue it, "
                              "--overwrite to start again, or choose another --out")
    trainer.prepare_backend()
    trainer.write_source()
    return TrainingState(record={**record, "schedule_epochs": record["epochs"]}, schedule_epochs=record["epochs"])
