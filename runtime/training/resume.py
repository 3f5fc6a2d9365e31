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

from onnxforge.runtime.errors import CheckpointError
from onnxforge.runtime.training.config import RESUMED_KEYS, RunConfig
from onnxforge.runtime.training.run_folder import RunFolder

__all__ = ["ResumeState", "resume_state", "start_run"]


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


def start_run(trainer, record: dict, batches, state: ResumeState | None, overwrite: bool) -> None:
    """Start the run of ``trainer`` in its held run folder: continue from the checkpoint
    (``state`` from :func:`resume_state`) or begin afresh (a checkpoint written before step 1)."""
    folder = trainer.rundir / trainer.backend_name  # the backend's own folder (artifacts/ for ONNX Runtime's)
    if state is not None:
        trainer.run.verify(trust_unrecorded=trainer.trust_checkpoint)
        with trainer.run.writing("the backend's files"):
            trainer.backend.prepare(folder, trainer.intra_op_threads)
        props = trainer.backend.load_checkpoint(trainer.run.checkpoint)
        trainer._prepared = True
        try:
            trainer.epoch, trainer.step = int(props["epoch"]), int(props["step"])
            batches.set_rng_state(json.loads(props["rng"]))
            history = json.loads(props["history"]) if "history" in props else state.history
            if "epoch_step" in props:  # saved by Ctrl-C mid-epoch: the RNG is the epoch's start, these steps done
                loss_sum, seen = json.loads(props["epoch_loss"])
                trainer._resume_within_epoch = (int(props["epoch_step"]), (float(loss_sum), int(seen)))
        except (KeyError, ValueError, TypeError):
            raise CheckpointError(f"checkpoint '{trainer.run.checkpoint}' lacks the run's progress (epoch, step, RNG)") from None
        trainer.history = history[: trainer.epoch]
        trainer._schedule_epochs = state.schedule_epochs
        trainer._record = {**record, "schedule_epochs": state.schedule_epochs}
        # a kill between the checkpoint's rename and the export leaves model.onnx and metrics.json
        # one epoch behind it: the checkpoint is the truth, so both are written again from it
        trainer.export()
        trainer._write_metrics()
        return
    if trainer.run.has_checkpoint() and not overwrite:
        raise CheckpointError(f"run folder '{trainer.rundir}' already holds a checkpoint; pass --resume to continue it, "
                              "--overwrite to start again, or choose another --out")
    with trainer.run.writing("the backend's files"):
        trainer.backend.prepare(folder, trainer.intra_op_threads)
    trainer._prepared = True
    trainer.write_source()
    trainer.epoch, trainer.step, trainer.history = 0, 0, []
    trainer._schedule_epochs = record["epochs"]
    trainer._record = {**record, "schedule_epochs": record["epochs"]}
    trainer._write_metrics()
    trainer._save_checkpoint(batches)  # before step 1: a run killed from here on can be resumed

