"""Data-parallel training on Ray Train: :class:`RayTrain` is the strategy of
``Trainer(..., workers=N, strategy=RayTrain())`` (and of ``onnxforge train --workers N --engine
ray``). It starts N Ray Train workers with ``TorchTrainer`` (a torch.distributed gloo group set up
by Ray Train; no socket of onnxforge's own), each running :func:`.worker.run_worker`: the
Trainer's loop on the ``onnx`` backend with the gradients averaged (see :mod:`.parallel`).
``batch_size`` is per worker; the run folder records the global batch (workers x batch_size).

A worker that dies (killed, out of memory, its node lost) fails Ray Train's worker group; the
driver then starts the group again from the run folder's last checkpoint (``--resume`` done for
you), up to ``max_failures`` times, and the run ends on the weights an uninterrupted run reaches.
An onnxforge error inside a worker (bad data, say) is raised on the driver as the same one-line
error, never retried. The run folder must be on a path the driver and rank 0 share (one machine,
or a shared file system); training data given as a path must be readable by every worker, data
given as arrays travels with the job.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import replace

from onnxforge.runtime.distributed._extras import init_ray, require, worker_error
from onnxforge.runtime.distributed.parallel import TorchCollective
from onnxforge.runtime.distributed.worker import WorkerJob, run_worker
from onnxforge.runtime.errors import CheckpointError, ConfigError, TrainingError
from onnxforge.runtime.training.resume import resume_state
from onnxforge.runtime.training.state import TrainingState

__all__ = ["RayTrain"]

_OPTIONS = ("loss", "optimizer", "lr", "weight_decay", "schedule", "warmup_steps", "freeze", "seed")


def _absolute(path):
    """A data path as the driver sees it, made absolute for the workers (other values unchanged)."""
    return os.path.abspath(os.fspath(path)) if isinstance(path, (str, os.PathLike)) else path


def _logging(train, verbose: bool) -> dict:
    """Ray Train's own log level (its controller's INFO lines unless ``verbose``), where it has one."""
    config = getattr(train, "LoggingConfig", None)
    return {} if config is None else {"logging_config": config(log_level="INFO" if verbose else "WARNING")}


def _train_loop(config: dict) -> None:
    """What each Ray Train worker runs (module level: Ray imports it by name)."""
    run_worker(config["job"], TorchCollective())


class RayTrain:
    """Runs a Trainer's ``fit`` on ``trainer.workers`` Ray Train workers. ``use_gpu``: one GPU per
    worker (the sessions run on CUDA; the gradients are averaged on the host); ``cpus_per_worker``:
    Ray resources each worker takes; ``address``: the Ray cluster (default: ``RAY_ADDRESS`` or a
    local one); ``max_failures``: restarts after a worker dies."""

    def __init__(self, *, use_gpu: bool = False, cpus_per_worker: float = 1, address: str | None = None,
                 max_failures: int = 3, verbose: bool = False):
        self.use_gpu, self.cpus_per_worker, self.address, self.max_failures = use_gpu, cpus_per_worker, address, max_failures
        self.verbose = verbose  # Ray's own INFO lines (else WARNING and above)

    def fit(self, trainer, train, val, given: dict) -> list[dict]:
        """``trainer.fit(train, val, **given)`` on the workers; afterwards ``trainer`` holds the run's
        weights, history, epoch and step (read back from the run folder's checkpoint)."""
        ray = require("ray", "Training on Ray")
        require("ray.train.torch", "Training on Ray")
        require("torch", "Training on Ray")
        workers, cfg = trainer.workers, trainer.config
        epochs = given.get("epochs") or cfg.epochs
        batch = given["batch_size"] * workers if given.get("batch_size") else cfg.batch_size
        if batch % workers:
            raise TrainingError(f"the run's global batch of {batch} examples does not split into {workers} equal worker "
                                f"batches; use a number of workers that divides it")
        if trainer.fixed_batch is not None:
            raise ConfigError(f"the model's inputs have a fixed batch of {trainer.fixed_batch}, and workers split each "
                              "batch; free it first: onnxforge convert MODEL.onnx --dynamic-batch -o OUT.onnx")
        checked = trainer.check_data(train, "training data")
        if val is not None:
            trainer.check_data(val, "validation data")
        resume, overwrite = bool(given.get("resume")), bool(given.get("overwrite"))
        if resume and not trainer.run.has_checkpoint():
            resume_state(trainer.run, None)  # says why there is nothing to continue
        if resume and self._adopt(trainer) >= epochs:
            trainer.finished_before = True
            return trainer.history
        if not resume and trainer.run.has_checkpoint() and not overwrite:
            raise CheckpointError(f"run folder '{trainer.rundir}' already holds a checkpoint; pass --resume to continue "
                                  "it, --overwrite to start again, or choose another --out")
        options = {k: getattr(cfg, k) for k in _OPTIONS}
        options.update(backend="onnx", device="cuda" if self.use_gpu else "cpu", threads=trainer.threads,
                       progress=trainer.progress, trust_checkpoint=trainer.trust_checkpoint,
                       checkpoint_every=trainer.checkpoint_policy)  # rank 0 saves on the user's policy
        # the workers run in Ray's session folders: every path they are given is absolute
        job = WorkerJob(trainer.source.SerializeToString(), str(trainer.rundir.absolute()), options,
                        _absolute(train) if isinstance(train, (str, os.PathLike)) else checked, _absolute(val), epochs, batch,
                        cfg.shuffle if given.get("shuffle") is None else given["shuffle"], resume, overwrite,
                        list(given.get("callbacks") or ()), given.get("callback"))
        init_ray(ray, self.address, verbose=self.verbose, log_to_driver=False)
        for attempt in range(self.max_failures + 1):
            try:
                self._launch(job, workers)
                break
            except Exception as exc:  # noqa: BLE001 - Ray wraps whatever a worker raised
                error = worker_error(exc)
                if error is not None:
                    raise error from None
                if attempt == self.max_failures:
                    line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                    raise TrainingError(f"the Ray Train run failed {attempt + 1} times, the last with: {line}; "
                                        f"its last checkpoint is kept in '{trainer.rundir}' (resume with --resume)") from None
                job = replace(job, resume=trainer.run.has_checkpoint())  # a worker died: continue from the checkpoint
        trainer.config = replace(cfg, epochs=epochs, batch_size=batch, shuffle=job.shuffle)
        self._adopt(trainer)
        return trainer.history

    def _launch(self, job: WorkerJob, workers: int) -> None:
        train = require("ray.train", "Training on Ray")
        torch_train = require("ray.train.torch", "Training on Ray")
        storage = tempfile.mkdtemp(prefix="onnxforge-raytrain-")
        try:
            runner = torch_train.TorchTrainer(
                _train_loop, train_loop_config={"job": job}, torch_config=torch_train.TorchConfig(backend="gloo"),
                scaling_config=train.ScalingConfig(num_workers=workers, use_gpu=self.use_gpu,
                                                   resources_per_worker={"CPU": self.cpus_per_worker}),
                run_config=train.RunConfig(storage_path=storage, name="onnxforge", **_logging(train, self.verbose),
                                           failure_config=train.FailureConfig(max_failures=0)))
            result = runner.fit()
            if getattr(result, "error", None) is not None:
                raise result.error
        finally:
            shutil.rmtree(storage, ignore_errors=True)

    @staticmethod
    def _adopt(trainer) -> int:
        """Load the run folder's checkpoint into ``trainer`` (weights, epoch, step, history); returns
        the epoch (0 when the folder holds no checkpoint yet)."""
        if not trainer.run.has_checkpoint():
            return 0
        trainer.run.verify(trust_unrecorded=trainer.trust_checkpoint)
        props = trainer.backend.load_checkpoint(trainer.run.checkpoint)
        trainer.adopt(TrainingState.from_checkpoint(props, trainer.run.checkpoint))
        return trainer.epoch
