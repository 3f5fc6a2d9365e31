"""Training any ONNX model with float parameters, one job per part (the model is Keras's
trainers/epoch_iterator.py, "separation of concerns"):

- :class:`Trainer` (here) only coordinates: it wires the parts below together and runs the epochs.
- :class:`~.config.RunConfig`: the options, checked once; the record a resume compares.
- :class:`~.parameters.ParameterPlan`: trainable, frozen and running-state initialisers.
- :class:`~.run_folder.RunFolder`: the folder's files, its lock, checkpoints and their digests.
- :class:`~.epochs.EpochIterator`: the batches of each epoch in the seeded order.
- :mod:`~.callbacks`: progress bar, epoch lines, NaN stop, user hooks.
- :mod:`~.backends`: what computes a step (ONNX Runtime's training artifacts, ...).

Options of :class:`Trainer`: ``loss`` is "auto" (from the model's task), "cross-entropy" or "mse" (see
:mod:`onnxforge.runtime.tasks.losses` for the scaling). ``optimizer`` is "adamw" (``weight_decay``
applies) or "sgd" (plain SGD). ``schedule`` is "constant", "linear" or "cosine", after
``warmup_steps`` of linear warm-up. ``freeze`` holds glob patterns of parameter names kept fixed
(a batch norm whose scale and bias are frozen keeps its running statistics too).
``progress``: True shows a bar on stderr and one line per epoch, "bar" only the bar, False nothing.
``threads``: ONNX Runtime's intra-op threads; "auto" takes 1 when a training step is small
(estimated FLOPs below ``onnxforge.runtime.ort.threads.AUTO_THRESHOLD_FLOPS``) and every core
otherwise (chosen in ``fit`` from the batch shape), ``None`` ONNX Runtime's default, a number
exactly that many. ``backend``: "auto" or a name in ``onnxforge.runtime.training.backends.BACKENDS``.
``trust_checkpoint``: resume from a checkpoint that has no digest record.
``checkpoint_every``: when the checkpoint, model.onnx and metrics.json are written (see
:class:`~.config.CheckpointPolicy`): ``"30s"`` (the default, ``CHECKPOINT_EVERY``), ``"5m"``, a
number of epochs (``1``: every epoch); always after the run's last epoch and before its first step.
``workers``: data-parallel processes, started by ``strategy`` (see :func:`parallel_backend`);
``fit``'s ``batch_size`` is then per worker.
``lora``: a :class:`~onnxforge.runtime.adapters.LoRA` (or a rank): train low-rank adapters on the
MatMul/Gemm weights and nothing else (see :mod:`onnxforge.runtime.adapters.run` for the files).
``backend_factory``: builds the step's backend from the
:class:`~.backends.TrainingSpec` instead of the named backend's class (a data-parallel worker's).

Where the run stands (epoch, step, history, record, schedule) is one :class:`~.state.TrainingState`,
``trainer.state``; a resume returns one and the Trainer adopts it (:meth:`Trainer.adopt`).
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from onnx import ModelProto

from onnxforge.runtime.adapters import LoRA, LoRARun
from onnxforge.runtime.adapters.external import open_for_training, write_with_data
from onnxforge.runtime.data.datasets import Dataset
from onnxforge.runtime.errors import ConfigError
from onnxforge.runtime.inference.session import model_inputs
from onnxforge.runtime.modelio.card import ModelCard
from onnxforge.runtime.modelio.protos import static_dims
from onnxforge.runtime.ort.device import Device, resolve_device
from onnxforge.runtime.ort.threads import check_threads, resolve_threads
from onnxforge.runtime.passes import pipelines
from onnxforge.runtime.tasks.evaluation import check_for_model, fixed_batch
from onnxforge.runtime.tasks.registry import task_for
from onnxforge.runtime.training.backends import TrainingSpec, backend_class
from onnxforge.runtime.training.backends.base import TrainingBackend
from onnxforge.runtime.training.callbacks import Callback, CallbackList, Checkpointing, format_record, standard_callbacks
from onnxforge.runtime.training.config import CHECKPOINT_EVERY, OPTIMIZERS, CheckpointPolicy, RunConfig
from onnxforge.runtime.training.epochs import EpochIterator, check_fixed_batch, run_epoch
from onnxforge.runtime.training.interrupt import Interruption, save_interrupted
from onnxforge.runtime.training.parameters import ParameterPlan
from onnxforge.runtime.training.results import TrainerResults
from onnxforge.runtime.training.resume import recorded_options, resume_state, start_run
from onnxforge.runtime.training.run_folder import RunFolder
from onnxforge.runtime.training.state import TrainingState
from onnxforge.runtime.training.validation import Validation

# what fit, evaluate and check_data take: a Dataset, an (x, y) pair, or a data file or folder
DataLike = Dataset | tuple | str | os.PathLike

__all__ = ["Trainer", "OPTIMIZERS", "format_record", "parallel_backend"]


def parallel_backend(workers: int, strategy: Any, backend: str) -> str:
    """The backend of a run on ``workers`` processes, checked before anything is written. Workers
    average gradients, which the ``onnx`` backend's graphs can output; the ``artifacts`` backend
    applies its optimizer inside ONNX Runtime training, so it trains on one process only. The
    training room starts no processes: ``strategy`` does (``onnxforge.runtime.distributed.RayTrain``)."""
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ConfigError(f"workers must be a positive integer; got {workers!r}")
    if workers == 1:
        return backend
    if backend == "artifacts":
        raise ConfigError(f"workers={workers} needs the onnx backend: the artifacts backend applies its optimizer step "
                          "inside ONNX Runtime training, where no gradient can be averaged between workers; "
                          "use backend='onnx' (--backend onnx) or one worker")
    if strategy is None:
        raise ConfigError(f"workers={workers} needs a strategy that starts the workers: pass "
                          "strategy=onnxforge.runtime.distributed.RayTrain() (or run onnxforge train --workers N --engine ray)")
    return "onnx"


def lora_backend(lora: LoRA | None, backend: str) -> str:
    """The backend of a LoRA run: the adapters are a graph rewrite of the ``onnx`` backend's step."""
    if lora is None:
        return backend
    if backend not in ("auto", "onnx"):
        raise ConfigError(f"lora needs the onnx backend (the adapters are a graph rewrite of its step); got backend={backend!r}")
    return "onnx"


class Trainer(TrainerResults):
    """Train ``model`` (path, run folder or ``ModelProto``) into the run folder ``rundir``; the
    options are described in the module docstring."""

    def __init__(self, model: str | os.PathLike[str] | ModelProto | bytes, rundir: str | os.PathLike[str], *,
                 loss: str = "auto", optimizer: str = "adamw", lr: float = 1e-3, weight_decay: float = 0.01,
                 schedule: str = "constant", warmup_steps: int = 0, freeze: str | Sequence[str] = (),
                 device: str | Device = "auto", seed: int = 0, threads: int | str | None = "auto",
                 progress: bool | str = True, backend: str = "auto", trust_checkpoint: bool = False,
                 workers: int = 1, strategy: Any = None, checkpoint_every: str | int | CheckpointPolicy = CHECKPOINT_EVERY,
                 lora: LoRA | int | None = None, backend_factory: Callable[[TrainingSpec], TrainingBackend] | None = None):
        adapters = LoRA.of(lora)
        if adapters is not None and workers != 1:
            raise ConfigError(f"lora trains on one worker (data-parallel workers would not get the adapters); got workers={workers}")
        backend = lora_backend(adapters, parallel_backend(workers, strategy, backend))
        self.checkpoint_policy = CheckpointPolicy.parse(checkpoint_every)
        self.config = RunConfig(loss=loss, optimizer=optimizer, lr=lr, weight_decay=weight_decay, schedule=schedule,
                                warmup_steps=warmup_steps, freeze=freeze, seed=seed, backend=backend,
                                lora=adapters.record() if adapters is not None else None)
        # a LoRA run keeps external-data weights in their files (memory-mapped, see adapters.external)
        self.source, self.external = open_for_training(model, keep_external=adapters is not None)
        self.run = RunFolder(rundir)
        self.rundir = self.run.path
        self.card = ModelCard.from_model(self.source)
        self.task = task_for(self.card, loss)
        self.loss = self.task.default_loss if loss == "auto" else loss
        if self.loss == "cross-entropy" and not self.task.labels_are_classes:
            raise ConfigError("loss 'cross-entropy' needs a classifier, but the model's task is regression")
        check_threads(threads)
        self.threads, self.progress, self.trust_checkpoint, self.workers = threads, progress, trust_checkpoint, workers
        # "auto" is resolved in fit()
        self.intra_op_threads: int | None = None if threads is None or threads == "auto" else int(threads)
        self.output_name = self.card.output or self.source.graph.output[0].name
        if self.output_name not in [o.name for o in self.source.graph.output]:
            raise ConfigError(f"the model has no output {self.output_name!r} to train")
        self.inputs = model_inputs(self.source)
        self.lora = LoRARun(adapters, self.source, seed, self.external) if adapters is not None else None
        if self.lora is not None and freeze:
            raise ConfigError("freeze and lora do not go together: with lora every base weight is frozen already")
        self.training_source = self.lora.training_model(self.source) if self.lora is not None else self.source
        self.plan = (ParameterPlan(self.lora.trainable, (), (), ()) if self.lora is not None
                     else ParameterPlan.of(self.source, self.config.freeze))
        self.trainable, self.frozen, self.buffers = list(self.plan.trainable), list(self.plan.frozen), list(self.plan.buffers)
        self.device, self.fixed_batch = resolve_device(device), fixed_batch(self.inputs)
        chosen = backend_class(backend, self.source)
        self.backend_name = chosen.name
        self.backend: TrainingBackend = (backend_factory or chosen)(TrainingSpec(
            pipelines.for_training_source(self.training_source), self.output_name, tuple(i.name for i in self.inputs), self.loss,
            self.task.ignore_index, self.config.optimizer, self.config.weight_decay, self.plan.trainable, self.plan.frozen,
            self.plan.buffers, self.device, self.fixed_batch,
            constants=self.lora.constants if self.lora is not None else {}))
        self.state, self.strategy = TrainingState(), strategy
        self.total_steps = 0
        self.finished_before = False  # a resume found nothing left to do
        self.validation = Validation()  # the sessions evaluation runs on, given the current weights
        self.interrupted: dict | None = None  # what a Ctrl-C's checkpoint holds (see .interrupt)

    @classmethod
    def from_run(cls, rundir: str | os.PathLike[str], model: Any = None, **given: Any) -> Trainer:
        """The trainer of the run in ``rundir`` with its recorded settings (see :func:`.resume.recorded_options`)."""
        source, options, fit = recorded_options(RunFolder(rundir), given)
        trainer = cls(source if model is None else model, rundir, **options)
        trainer.config = replace(trainer.config, **fit)
        return trainer

    # -- where the run stands (self.state) -------------------------------------------------------
    @property
    def epoch(self) -> int:
        return self.state.epoch

    @property
    def step(self) -> int:
        return self.state.step

    @property
    def history(self) -> list[dict]:
        return self.state.history

    def adopt(self, state: TrainingState) -> None:
        """Continue from ``state`` (a resume's, a data-parallel run's); the backend holds its weights."""
        self.state = state
        self.validation.weights_changed()

    def write_source(self) -> None:
        """``RUNDIR/source.onnx``: the model the run started from (its external data beside it)."""
        if self.external is not None:
            write_with_data(self.source, self.run.source, self.external.arrays)
        else:
            self.run.write_model(self.source, self.run.source)

    def prepare_backend(self) -> None:
        """Let the backend write its files into ``RUNDIR/<backend>`` and build its sessions."""
        with self.run.writing("the backend's files"):
            self.backend.prepare(self.rundir / self.backend_name, self.intra_op_threads)

    @property
    def artifacts_dir(self) -> Path:
        return self.rundir / "artifacts"

    @property
    def checkpoint_path(self) -> Path:
        return self.run.checkpoint

    def training_graph(self) -> ModelProto:
        return self.backend.training_graph()

    def check_data(self, data: DataLike, name: str) -> Dataset:
        """``data`` (:class:`Dataset`, ``(x, y)``, ``.npz`` path) checked for the model; ``name`` in errors."""
        out = next(o for o in self.source.graph.output if o.name == self.output_name)
        return check_for_model(data, self.inputs, static_dims(out), self.card, loss=self.loss, name=name)

    # -- the run ---------------------------------------------------------------------------------
    def fit(self, train: DataLike, val: DataLike | None = None, *, epochs: int | None = None, batch_size: int | None = None,
            shuffle: bool | None = None, resume: bool = False, overwrite: bool = False,
            callback: Callable[[dict], object] | None = None, callbacks: Sequence[Callback] = ()) -> list[dict]:
        """Train for ``epochs`` epochs in total (a resumed run continues up to that number; the
        defaults are the run's recorded settings after :meth:`from_run`, else 10, 32, True).

        ``train`` and ``val`` are :class:`Dataset` objects, ``(x, y)`` pairs or ``.npz`` paths.
        Returns the history: one dict per epoch with ``loss``, ``steps_per_s``, ``lr`` and, with
        ``val``, ``val_loss`` and the task's metrics prefixed ``val_``. ``callback(record)`` runs
        after each epoch; ``callbacks`` are :class:`~.callbacks.Callback` objects.
        """
        if self.workers > 1:  # the strategy runs the workers (each a Trainer of one) and adopts their run
            return self.strategy.fit(self, train, val, dict(epochs=epochs, batch_size=batch_size, shuffle=shuffle,
                                                            resume=resume, overwrite=overwrite, callback=callback, callbacks=callbacks))
        given: dict[str, Any] = {k: v for k, v in (("epochs", epochs), ("batch_size", batch_size), ("shuffle", shuffle)) if v is not None}
        cfg = self.config = replace(self.config, **given)
        train = self.check_data(train, "training data")
        val = self.check_data(val, "validation data") if val is not None else None
        check_fixed_batch(self.fixed_batch, cfg.batch_size, len(train))
        if self.threads == "auto":
            shapes = {k: (min(cfg.batch_size, len(train)), *v.shape[1:]) for k, v in train.inputs.items()}
            self.intra_op_threads = resolve_threads("auto", self.source, shapes, training=True)
        identity = self.external.identity(self.source) if self.external is not None else self.source
        record = cfg.record(identity, loss=self.loss, backend=self.backend_name, task=self.task.name,
                            trainable=len(self.trainable), frozen=len(self.frozen), **self.parameter_counts())
        batches = EpochIterator([train.inputs[i.name] for i in self.inputs], train.y,  # type: ignore[arg-type]  # has targets
                                cfg.batch_size,
                                shuffle=cfg.shuffle, rng=np.random.default_rng(cfg.seed),
                                drop_last=self.fixed_batch is not None)
        state = resume_state(self.run, None, record) if resume else None  # refused before the folder is touched
        with self.run.held(create=not resume, overwrite=overwrite):
            self.adopt(start_run(self, record, batches, state, overwrite))
            if state is not None:  # a kill between the checkpoint's rename and the export leaves model.onnx and
                self.export()      # metrics.json one epoch behind it: the checkpoint is the truth, both are rewritten
            self.write_metrics()
            if state is None:
                self.save_checkpoint(batches)  # before step 1: a run killed from here on can be resumed
            if self.epoch >= cfg.epochs:
                self.finished_before = True
                return self.history
            self.total_steps = batches.steps * self.state.schedule_epochs
            self._run_epochs(batches, val, standard_callbacks(self.progress, callback, callbacks,
                                                              Checkpointing(self.checkpoint_policy, batches)))
        return self.history

    def _run_epochs(self, batches: EpochIterator, val, callbacks: CallbackList) -> None:
        cfg = self.config
        callbacks.on_train_begin(self)
        try:
            with Interruption() as stop:  # Ctrl-C: the step it lands on is saved, then the run stops
                while self.epoch < cfg.epochs:
                    epoch = self.epoch + 1
                    self.backend.seed(cfg.seed * 100_003 + epoch)  # dropout masks depend on (seed, epoch) only
                    callbacks.on_epoch_begin(epoch, cfg.epochs)
                    epoch_rng = batches.rng_state()  # before the epoch's order is drawn: what a mid-epoch save keeps
                    done = run_epoch(self.backend, batches, cfg, self.state, self.total_steps, callbacks.step_hooks,
                                     stop.flag)
                    if done.stopped:
                        save_interrupted(self, batches, epoch_rng, done.epoch_step, done.loss)
                    self.state.epoch = epoch
                    self.validation.weights_changed()
                    record = done.record(epoch)
                    if val is not None:
                        record.update({f"val_{k}": v for k, v in self.evaluate(val).items()})
                    self.history.append(record)
                    callbacks.on_epoch_end(record)  # Checkpointing first: the files, on the epochs its policy saves
                    if stop.flag[0] and self.epoch < cfg.epochs:  # Ctrl-C during validation or the epoch's files
                        save_interrupted(self, batches, None, 0, (0.0, 0))
        finally:
            callbacks.on_train_end()

    def save_checkpoint(self, batches: EpochIterator, epoch_rng: dict | None = None, epoch_step: int = 0,
                        epoch_loss: tuple[float, int] = (0.0, 0)) -> None:
        """Weights, optimizer state, progress, data order (mid-epoch: the epoch's first and how far it got)."""
        if self.plan.held:  # frozen batch norms keep their running statistics
            self.backend.load_state(replace(self.backend.state(), parameters=self.plan.values(self.training_source, self.plan.held)))
        rng = epoch_rng if epoch_step and epoch_rng is not None else batches.rng_state()
        props = self.state.checkpoint_properties(rng, epoch_step, epoch_loss)
        self.run.save_checkpoint(lambda tmp: self.backend.save_checkpoint(tmp, props))

    def write_metrics(self) -> None:
        self.run.write_metrics({"config": self.state.record, "device": self.device.name, "history": self.history,
                                **self.parameter_counts()})
