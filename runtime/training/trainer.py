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
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from onnx import ModelProto, numpy_helper

from onnxforge.runtime.adapters import LoRA, LoRARun
from onnxforge.runtime.adapters.external import open_for_training, write_with_data
from onnxforge.runtime.data.datasets import Dataset
from onnxforge.runtime.errors import ConfigError
from onnxforge.runtime.inference.session import Session, model_inputs, session_options
from onnxforge.runtime.modelio.card import ModelCard
from onnxforge.runtime.ort.device import Device, resolve_device
from onnxforge.runtime.ort.threads import check_threads, resolve_threads
from onnxforge.runtime.passes import pipelines
from onnxforge.runtime.tasks.evaluation import check_for_model, evaluate, fixed_batch
from onnxforge.runtime.tasks.task import task_for
from onnxforge.runtime.training.backends import TrainingSpec, backend_class
from onnxforge.runtime.training.callbacks import CallbackList, Checkpointing, format_record, standard_callbacks
from onnxforge.runtime.training.config import CHECKPOINT_EVERY, OPTIMIZERS, CheckpointPolicy, RunConfig
from onnxforge.runtime.training.epochs import EpochIterator, check_fixed_batch
from onnxforge.runtime.training.interrupt import Interruption
from onnxforge.runtime.training.export import inference_model
from onnxforge.runtime.training.parameters import ParameterPlan
from onnxforge.runtime.training.resume import resume_state, start_run
from onnxforge.runtime.training.run_folder import RunFolder
from onnxforge.runtime.training.schedules import learning_rate
from onnxforge.runtime.training.validation import Validation

__all__ = ["Trainer", "OPTIMIZERS", "format_record", "parallel_backend"]


def parallel_backend(workers, strategy, backend: str) -> str:
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


class Trainer:
    """Train ``model`` (path, run folder or ``ModelProto``) into the run folder ``rundir``; the
    options are described in the module docstring."""

    def __init__(self, model, rundir, *, loss: str = "auto", optimizer: str = "adamw", lr: float = 1e-3,
                 weight_decay: float = 0.01, schedule: str = "constant", warmup_steps: int = 0,
                 freeze=(), device: str | Device = "auto", seed: int = 0, threads: int | str | None = "auto",
                 progress: bool | str = True, backend: str = "auto", trust_checkpoint: bool = False,
                 workers: int = 1, strategy=None, checkpoint_every=CHECKPOINT_EVERY, lora=None):
        backend = parallel_backend(workers, strategy, backend)
        lora = LoRA.of(lora)
        if lora is not None and backend not in ("auto", "onnx"):
            raise ConfigError(f"lora needs the onnx backend (the adapters are a graph rewrite of its step); got backend={backend!r}")
        backend = "onnx" if lora is not None else backend
        self.checkpoint_policy = CheckpointPolicy.parse(checkpoint_every)
        self.config = RunConfig(loss=loss, optimizer=optimizer, lr=lr, weight_decay=weight_decay, schedule=schedule,
                                warmup_steps=warmup_steps, freeze=freeze, seed=seed, backend=backend,
                                lora=lora.record() if lora is not None else None)
        # a LoRA run keeps external-data weights in their files (memory-mapped, see adapters.external)
        self.source, self.external = open_for_training(model, keep_external=lora is not None)
        self.run = RunFolder(rundir)
        self.rundir = self.run.path
        self.card = ModelCard.from_model(self.source)
        self.task = task_for(self.card, loss)
        self.loss = self.task.default_loss if loss == "auto" else loss
        if self.loss == "cross-entropy" and self.task.name == "regression":
            raise ConfigError("loss 'cross-entropy' needs a classifier, but the model's task is regression")
        check_threads(threads)
        self.threads, self.progress, self.trust_checkpoint, self.workers = threads, progress, trust_checkpoint, workers
        self.intra_op_threads = None if threads == "auto" else threads  # "auto" is resolved in fit()
        self.output_name = self.card.output or self.source.graph.output[0].name
        if self.output_name not in [o.name for o in self.source.graph.output]:
            raise ConfigError(f"the model has no output {self.output_name!r} to train")
        self.inputs = model_inputs(self.source)
        self.lora = LoRARun(lora, self.source, seed, self.external) if lora is not None else None
        if self.lora is not None and freeze:
            raise ConfigError("freeze and lora do not go together: with lora every base weight is frozen already")
        self.training_source = self.lora.training_model(self.source) if self.lora is not None else self.source
        self.plan = (ParameterPlan(self.lora.trainable, (), (), ()) if self.lora is not None
                     else ParameterPlan.of(self.source, self.config.freeze))
        self.trainable, self.frozen, self.buffers = list(self.plan.trainable), list(self.plan.frozen), list(self.plan.buffers)
        self.device, self.fixed_batch = resolve_device(device), fixed_batch(self.inputs)
        self.backend_name = backend_class(backend, self.source).name
        self.backend = backend_class(backend, self.source)(self._spec())
        self.history, self.strategy = [], strategy  # history: one record per epoch
        self.epoch = self.step = self.total_steps = 0
        self.finished_before = self._prepared = False  # finished_before: a resume found nothing left to do
        self._record = self._infer_session = None
        self._validation = Validation()  # the session each epoch's validation runs on
        # a resume from a Ctrl-C checkpoint made mid-epoch: (steps of the epoch done, (loss sum, examples))
        self._resume_within_epoch, self.interrupted = (0, (0.0, 0)), None

    def _spec(self) -> TrainingSpec:
        model = pipelines.for_training_source(self.training_source)
        return TrainingSpec(model, self.output_name, tuple(i.name for i in self.inputs), self.loss, self.task.ignore_index,
                            self.config.optimizer, self.config.weight_decay, self.plan.trainable, self.plan.frozen,
                            self.plan.buffers, self.device, self.fixed_batch,
                            constants=self.lora.constants if self.lora is not None else {})

    @classmethod
    def from_run(cls, rundir, model=None, **given) -> "Trainer":
        """The trainer of the run in ``rundir`` with its recorded settings; ``given`` options must
        agree with them (``epochs`` may change, see :func:`.resume.resume_state`)."""
        folder = RunFolder(rundir)
        state = resume_state(folder, given)
        fit_keys = ("epochs", "batch_size", "shuffle")
        options = {k: v for k, v in given.items() if k not in fit_keys}
        kw = {k: getattr(state.config, k) for k in ("loss", "optimizer", "lr", "weight_decay", "schedule",
                                                     "warmup_steps", "freeze", "seed", "backend", "lora")}
        kw.update(options)
        trainer = cls(folder.source if model is None else model, rundir, **kw)
        trainer.config = replace(trainer.config, **{k: getattr(state.config, k) for k in fit_keys})
        return trainer

    # -- compatibility views ---------------------------------------------------------------------
    @property
    def artifacts_dir(self) -> Path:
        return self.rundir / "artifacts"

    @property
    def checkpoint_path(self) -> Path:
        return self.run.checkpoint

    def training_graph(self) -> ModelProto:
        return self.backend.training_graph()

    # -- data ------------------------------------------------------------------------------------
    def _check(self, data, name: str) -> Dataset:
        out = next(o for o in self.source.graph.output if o.name == self.output_name)
        shape = tuple(d.dim_value if d.HasField("dim_value") else None for d in out.type.tensor_type.shape.dim)
        return check_for_model(data, self.inputs, shape, self.card, loss=self.loss, name=name)

    # -- the run ---------------------------------------------------------------------------------
    def fit(self, train, val=None, *, epochs: int | None = None, batch_size: int | None = None,
            shuffle: bool | None = None, resume: bool = False, overwrite: bool = False, callback=None,
            callbacks=()) -> list[dict]:
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
        given = {k: v for k, v in (("epochs", epochs), ("batch_size", batch_size), ("shuffle", shuffle)) if v is not None}
        self.config = replace(self.config, **given)
        cfg = self.config
        train = self._check(train, "training data")
        val = self._check(val, "validation data") if val is not None else None
        check_fixed_batch(self.fixed_batch, cfg.batch_size, len(train))
        if self.threads == "auto":
            shapes = {k: (min(cfg.batch_size, len(train)), *v.shape[1:]) for k, v in train.inputs.items()}
            self.intra_op_threads = resolve_threads("auto", self.source, shapes, training=True)
        identity = self.external.identity(self.source) if self.external is not None else self.source
        record = cfg.record(identity, loss=self.loss, backend=self.backend_name, task=self.task.name,
                            trainable=len(self.trainable), frozen=len(self.frozen), **self.parameter_counts())
        batches = EpochIterator([train.inputs[i.name] for i in self.inputs], train.y, cfg.batch_size,
                                shuffle=cfg.shuffle, rng=np.random.default_rng(cfg.seed),
                                drop_last=self.fixed_batch is not None)
        state = resume_state(self.run, None, record) if resume else None  # refused before the folder is touched
        with self.run.held(create=not resume, overwrite=overwrite):
            start_run(self, record, batches, state, overwrite)
            if self.epoch >= cfg.epochs:
                self.finished_before = True
                return self.history
            self.total_steps = batches.steps * self._schedule_epochs
            self._run_epochs(batches, val, standard_callbacks(self.progress, callback, callbacks,
                                                              Checkpointing(self.checkpoint_policy, batches)))
        return self.history

    def _run_epochs(self, batches: EpochIterator, val, callbacks: CallbackList) -> None:
        cfg, backend, total = self.config, self.backend, self.total_steps
        constant = cfg.schedule == "constant" and not cfg.warmup_steps
        step_hooks = callbacks.step_hooks
        callbacks.on_train_begin(self)
        try:
            with Interruption() as stop:
                flag = stop.flag  # a local list: checked after every step, set by Ctrl-C
                while self.epoch < cfg.epochs:
                    epoch = self.epoch + 1
                    backend.seed(cfg.seed * 100_003 + epoch)  # dropout masks depend on (seed, epoch) only
                    callbacks.on_epoch_begin(epoch, cfg.epochs)
                    epoch_rng = batches.rng_state()  # before the epoch's order is drawn: what a mid-epoch save keeps
                    skip, (loss_sum, seen) = self._resume_within_epoch
                    self._resume_within_epoch = (0, (0.0, 0))
                    t0, cpu0 = time.perf_counter(), time.process_time()
                    step = first = self.step  # a local in the loop: every attribute access costs at 10,000 steps/s
                    lr = learning_rate(cfg.schedule, cfg.lr, step, total, cfg.warmup_steps)
                    for inputs, targets in batches.epoch(skip):
                        if not constant:
                            lr = learning_rate(cfg.schedule, cfg.lr, step, total, cfg.warmup_steps)
                        loss = backend.train_step(inputs, targets, lr)
                        step += 1
                        for hook in step_hooks:
                            hook(step, loss)
                        size = len(targets)
                        loss_sum += loss * size
                        seen += size
                        if flag[0]:
                            self.step = step
                            self._save_interrupted(batches, epoch_rng, skip + step - first, loss_sum, seen)
                    self.step = step
                    seconds, cpu_seconds = time.perf_counter() - t0, time.process_time() - cpu0
                    self.epoch = epoch
                    self._infer_session = None
                    record = {"epoch": epoch, "loss": loss_sum / max(seen, 1), "lr": lr,
                              "steps_per_s": (step - first) / seconds if seconds > 0 else None,
                              "seconds": seconds, "cpu_seconds": cpu_seconds}
                    if val is not None:
                        record.update({f"val_{k}": v for k, v in self.evaluate(val).items()})
                    self.history.append(record)
                    callbacks.on_epoch_end(record)  # Checkpointing first: the files, on the epochs its policy saves
                    if flag[0] and self.epoch < cfg.epochs:  # Ctrl-C during validation or the epoch's files
                        self._save_interrupted(batches, None, 0, 0.0, 0)
        finally:
            callbacks.on_train_end()

    def _save_interrupted(self, batches: EpochIterator, epoch_rng, epoch_step: int, loss_sum: float, seen: int):
        """Ctrl-C: write the checkpoint of this very step (mid-epoch: the epoch's starting data
        order and how far it got, so ``--resume`` continues with the next batch), note what it
        holds in ``self.interrupted`` and end the run with KeyboardInterrupt."""
        within = {}
        if epoch_step:
            within = {"rng": json.dumps(epoch_rng), "epoch_step": str(epoch_step),
                      "epoch_loss": json.dumps([loss_sum, seen])}
        self._save_checkpoint(batches, within)
        if not epoch_step:
            self.export()
            self._write_metrics()
        self.interrupted = {"epoch": self.epoch + (1 if epoch_step else 0), "epoch_step": epoch_step or None,
                            "epoch_steps": batches.steps, "step": self.step, "epochs_done": self.epoch}
        raise KeyboardInterrupt

    # -- the folder's files ----------------------------------------------------------------------
    def _save_checkpoint(self, batches: EpochIterator, within_epoch: dict | None = None) -> None:
        if self.plan.held:  # frozen batch norms keep their running statistics
            self.backend.load_state(replace(self.backend.state(), parameters=self._held_values()))
        props = {"epoch": int(self.epoch), "step": int(self.step), "rng": json.dumps(batches.rng_state()),
                 "config": json.dumps(self._record, sort_keys=True), "history": json.dumps(self.history),
                 **(within_epoch or {})}
        self.run.save_checkpoint(lambda tmp: self.backend.save_checkpoint(tmp, props))

    def parameter_counts(self) -> dict:
        """``trainable_parameters`` and ``total_parameters``: elements trained, and in the model (with adapters)."""
        if self.lora is not None:
            return {"trainable_parameters": self.lora.trainable_parameters, "total_parameters": self.lora.total_parameters}
        sizes = {t.name: int(np.prod(t.dims)) for t in self.source.graph.initializer}
        return {"trainable_parameters": sum(sizes[n] for n in self.trainable),
                "total_parameters": sum(sizes[n] for n in self.trainable + self.frozen + self.buffers)}

    def _write_metrics(self) -> None:
        self.run.write_metrics({"config": self._record, "device": self.device.name, "history": self.history,
                                **self.parameter_counts()})

    def _held_values(self) -> dict:
        held = set(self.plan.held)
        return {t.name: numpy_helper.to_array(t) for t in self.training_source.graph.initializer if t.name in held}

    # -- results ---------------------------------------------------------------------------------
    def parameters(self) -> dict[str, np.ndarray]:
        """Current values of every parameter (trainable and frozen) and running statistic."""
        names = set(self.trainable + self.frozen + self.buffers)
        if not self._prepared:
            return {t.name: numpy_helper.to_array(t) for t in self.training_source.graph.initializer if t.name in names}
        return {**self.backend.parameters(), **self._held_values()}

    def inference_model(self) -> ModelProto:
        """The source model with the current weights (see :mod:`.export`)."""
        trained = self._trained()
        if self.external is not None:
            raise ConfigError("the model's weights stay in their external data files: its merged model is written by "
                              "export() (model.onnx with model.onnx.data), not built in memory")
        if self.lora is not None:
            model = inference_model(self.lora.merged_model(self.source, self.parameters()), {}, trained)
            return ModelCard.from_model(model).updated(self.lora.card()).write_into(model)
        return inference_model(self.source, self.parameters(), trained)

    def write_source(self) -> None:
        """``RUNDIR/source.onnx``: the model the run started from (its external data beside it)."""
        if self.external is not None:
            write_with_data(self.source, self.run.source, self.external.arrays)
        else:
            self.run.write_model(self.source, self.run.source)

    def _trained(self) -> dict | None:
        return None if self._record is None else {"epochs": self.epoch, "steps": self.step, "loss": self.loss,
                                                  "optimizer": self.config.optimizer}

    def session(self) -> Session:
        if self._infer_session is None:
            self._infer_session = Session(self.inference_model(), self.device, options=session_options(self.intra_op_threads))
        return self._infer_session

    def evaluate(self, data, batch_size: int = 1024) -> dict:
        """Loss and the task's metrics (accuracy for a classifier) with the current weights."""
        ds = data if isinstance(data, Dataset) and data.checked else self._check(data, "evaluation data")
        result = evaluate(self._validation.session(self), ds, loss=self.loss, batch_size=batch_size)
        result.pop("examples", None)
        return result

    def export(self, path=None) -> Path:
        """Write the inference model (atomically) to ``path`` or ``RUNDIR/model.onnx``; a LoRA run also
        writes ``model.lora.onnx`` and ``adapters.onnx_adapter`` beside it."""
        if self.external is not None:  # streamed into model.onnx.data, one weight block at a time
            model = inference_model(self.source, {}, self._trained())
            model = ModelCard.from_model(model).updated(self.lora.card()).write_into(model)
            written = self.lora.write_merged(model, Path(path or self.run.model), self.parameters())
        else:
            written = self.run.write_model(self.inference_model(), path)
        if self.lora is not None:
            self.lora.write(written.parent, self.parameters(), self.run.write_model, self._trained())
        return written
