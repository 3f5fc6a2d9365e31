"""One data-parallel worker: a :class:`~onnxforge.runtime.training.trainer.Trainer` of one
process whose backend is :class:`~.parallel.DataParallelBackend`, so the whole loop (seeded batch
order, schedule, callbacks, checkpoints, export) is the Trainer's own, on every rank.

Rank 0 owns the run folder and writes it with the Trainer's guarantees (lock, atomic checkpoints
with their digests, model.onnx, metrics.json). Every other rank runs the same loop in a private
scratch folder that is removed at the end; on a resume, rank 0 first broadcasts the run folder's
files (checkpoint, its digests, metrics, source) so every rank continues from the same epoch, step,
data-order RNG and weights. Validation and the user's callbacks run on rank 0 only. Independent
of Ray: any collective with ``rank``, ``world``, ``allreduce_sum`` and ``broadcast`` runs it.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from onnxforge.runtime.distributed.parallel import DataParallelBackend
from onnxforge.runtime.training.trainer import Trainer

__all__ = ["WorkerJob", "run_worker", "MIRRORED"]

MIRRORED = ("checkpoint", "checkpoint.sha256", "metrics.json", "source.onnx")


@dataclass
class WorkerJob:
    model: bytes                 # the forward model (the driver's Trainer.source)
    rundir: str                  # the run folder, written by rank 0
    options: dict                # Trainer keywords (loss, optimizer, lr, ..., device, threads)
    train: Any                   # a path every worker can read, or a checked Dataset
    val: Any = None              # evaluated on rank 0
    epochs: int = 10
    batch_size: int = 32         # the global batch: workers x the per-worker batch
    shuffle: bool = True
    resume: bool = False
    overwrite: bool = False
    callbacks: list = field(default_factory=list)  # rank 0's
    callback: Callable[[dict], object] | None = None


def _read_run(rundir: Path) -> dict:
    return {name: (rundir / name).read_bytes() for name in MIRRORED if (rundir / name).is_file()}


def run_worker(job: WorkerJob, collective) -> list[dict]:
    """Train this rank's part of ``job``; returns the history (rank 0's is the run's)."""
    rank = collective.rank
    scratch = None if rank == 0 else Path(tempfile.mkdtemp(prefix=f"onnxforge-rank{rank}-"))
    rundir = Path(job.rundir) if scratch is None else scratch / "run"
    try:
        if job.resume:
            files = collective.broadcast(_read_run(rundir) if rank == 0 else None)
            if rank:
                rundir.mkdir()
                for name, data in files.items():
                    (rundir / name).write_bytes(data)
        options = dict(job.options, progress=job.options.get("progress", False) if rank == 0 else False)
        trainer = Trainer(job.model, rundir, **options, backend_factory=lambda spec: DataParallelBackend(spec, collective))
        return trainer.fit(job.train, job.val if rank == 0 else None, epochs=job.epochs, batch_size=job.batch_size,
                           shuffle=job.shuffle, resume=job.resume, overwrite=job.overwrite or rank > 0,
                           callback=job.callback if rank == 0 else None, callbacks=job.callbacks if rank == 0 else ())
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
