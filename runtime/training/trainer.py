"""Training any ONNX model with float parameters through ONNX Runtime training artifacts.

A run folder holds everything a run needs and makes::

    RUNDIR/artifacts/      training, eval and optimizer graphs and the initial checkpoint
    RUNDIR/source.onnx     the forward model the run started from
    RUNDIR/checkpoint      weights, optimizer state, epoch, step, data-order RNG, settings, history
                           (written before step 1 and after every epoch; never half-written)
    RUNDIR/checkpoint.sha256  the digests of complete checkpoints (a damaged one is refused)
    RUNDIR/model.onnx      the inference model with the trained weights (every epoch)
    RUNDIR/metrics.json    configuration and history: loss, metrics, steps/s per epoch
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import math
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import onnx
from onnx import ModelProto, TensorProto, numpy_helper

from onnxforge.runtime.training.checkpoint_file import save_checkpoint, verify_checkpoint
from onnxforge.runtime.passes.inference_form import inference_form
from onnxforge.runtime.ort.distribution import ort, quiet_native_stderr, runtime_info, training_api
from onnxforge.runtime.data.datasets import Dataset, as_dataset, check_dataset, vocab_sizes
from onnxforge.runtime.ort.device import Device, resolve_device
from onnxforge.runtime.errors import CheckpointError, ConfigError, NotTrainableError, TrainingError
from onnxforge.runtime.tasks.losses import LOSSES, loss_block
from onnxforge.runtime.modelio.files import atomic_write_bytes, get_metadata, load_model, save_model, set_metadata
from onnxforge.runtime.training.schedules import SCHEDULES, learning_rate
from onnxforge.runtime.inference.session import Session, session_options
from onnxforge.runtime.passes.compat import make_runtime_compatible
from onnxforge.runtime.passes.gradient_form import TRAINING_MODE, trainable_parameters
from onnxforge.runtime.tasks.task import task_for

__all__ = ["Trainer", "OPTIMIZERS", "trainable_parameters"]


OPTIMIZERS = ("adamw", "sgd")
_CONFIG_KEYS = ("loss", "optimizer", "lr", "weight_decay", "schedule", "warmup_steps", "freeze", "seed",
                "batch_size", "epochs", "shuffle")


def _fingerprint(model: ModelProto) -> str:
    return hashlib.sha256(model.SerializeToString(deterministic=True)).hexdigest()[:16]


def _set_training_mode(model: ModelProto, on: bool) -> ModelProto:
    for t in model.graph.initializer:
        if t.name == TRAINING_MODE:
            t.CopyFrom(numpy_helper.from_array(np.array(on), TRAINING_MODE))
    return model


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


class Trainer:
    """Train ``model`` (path, run folder or ``ModelProto``) into the run folder ``rundir``.

    ``loss`` is "auto" (from the model's task), "cross-entropy" or "mse" (see
    :mod:`onnxforge.runtime.tasks.losses` for the scaling). ``optimizer`` is "adamw" (``weight_decay``
    applies) or "sgd" (plain SGD). ``schedule`` is "constant", "linear" or "cosine", after
    ``warmup_steps`` of linear warm-up. ``freeze`` holds glob patterns of parameter names kept fixed.
    ``progress``: True shows a bar on stderr and one line per epoch, "bar" only the bar, False nothing.
    ``threads``: ONNX Runtime's intra-op threads; "auto" takes 1 when a training step is small
    (estimated FLOPs below ``onnxforge.runtime.ort.threads.AUTO_THRESHOLD_FLOPS``) and every core
    otherwise (chosen in ``fit`` from the batch shape; see ``intra_op_threads``), ``None`` ONNX
    Runtime's default, a number exactly that many.
    """

    def __init__(self, model, rundir, *, loss: str = "auto", optimizer: str = "adamw", lr: float = 1e-3,
                 weight_decay: float = 0.01, schedule: str = "constant", warmup_steps: int = 0,
                 freeze=(), device: str | Device = "auto", seed: int = 0, threads: int | str | None = "auto",
                 progress: bool | str = True):
        self.source = load_model(model)
        self.rundir = Path(rundir)
        self.metadata = get_metadata(self.source)
        if loss not in ("auto", *LOSSES):
            raise ConfigError(f"loss must be one of auto, {', '.join(LOSSES)}; got {loss!r}")
        if optimizer not in OPTIMIZERS:
            raise ConfigError(f"optimizer must be one of {', '.join(OPTIMIZERS)}; got {optimizer!r}")
        if schedule not in SCHEDULES:
            raise ConfigError(f"schedule must be one of {', '.join(SCHEDULES)}; got {schedule!r}")
        if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
            raise ConfigError(f"learning rate must be a positive number; got {lr!r}")
        self.task = task_for(self.metadata, loss)
        self.loss = self.task.default_loss if loss == "auto" else loss
        if self.loss == "cross-entropy" and self.task.name == "regression":
            raise ConfigError("loss 'cross-entropy' needs a classifier, but the model's task is regression")
        self.optimizer_name = optimizer
        self.lr = float(lr)
        self.weight_decay = float(weight_decay)
        self.schedule = schedule
        self.warmup_steps = int(warmup_steps)
        self.seed = int(seed)
        from onnxforge.runtime.ort.threads import check_threads

        check_threads(threads)
        self.threads = threads
        self.intra_op_threads = None if threads == "auto" else threads  # "auto" is resolved in fit()
        self.progress = progress
        self.output_name = self.metadata.get("output") or self.source.graph.output[0].name
        if self.output_name not in [o.name for o in self.source.graph.output]:
            raise ConfigError(f"the model has no output {self.output_name!r} to train")
        params = trainable_parameters(self.source)
        from onnxforge.runtime.passes.gradient_form import state_buffers

        # running statistics (BatchNormalization): updated by training, never given gradients
        self.buffers = [p for p in state_buffers(self.source) if p in params]
        params = [p for p in params if p not in self.buffers]
        self.freeze = [freeze] if isinstance(freeze, str) else list(freeze or ())
        frozen = set()
        for pattern in self.freeze:
            hits = {p for p in params if fnmatch.fnmatchcase(p, pattern)}
            if not hits:
                raise ConfigError(f"freeze pattern {pattern!r} matches no parameter; parameters are: "
                                  f"{', '.join(params[:12])}{' ...' if len(params) > 12 else ''}")
            frozen |= hits
        self.frozen = [p for p in params if p in frozen]
        self.trainable = [p for p in params if p not in frozen]
        if not self.trainable:
            raise NotTrainableError("the model has no trainable float parameters"
                                    + (" (every one is frozen)" if params else ""))
        from onnxforge.runtime.passes.gradient_form import untrainable_ops

        blockers = untrainable_ops(self._prepared_source(), self.trainable)
        if blockers:
            raise NotTrainableError(
                "ONNX Runtime cannot compute gradients through: " + ", ".join(blockers)
                + "; such a model can be run but not trained"
            )
        self.device = resolve_device(device)
        self._module = None
        self._infer_session = None
        self.history: list[dict] = []
        self.epoch = 0
        self.step = 0
        self._rng = np.random.default_rng(self.seed)
        self._config = None

    # -- artifacts -------------------------------------------------------------------------------
    @property
    def artifacts_dir(self) -> Path:
        return self.rundir / "artifacts"

    @property
    def checkpoint_path(self) -> Path:
        return self.rundir / "checkpoint"

    def _prepared_source(self) -> ModelProto:
        from onnxforge import plugins

        model = ModelProto()
        model.CopyFrom(self.source)
        return plugins.prepare_training(model)

    def training_graph(self) -> ModelProto:
        """The forward graph as the training artifacts are generated from it."""
        model = _set_training_mode(self._prepared_source(), True)
        from onnxforge.runtime.passes.gradient_form import prepare_for_gradients

        model = prepare_for_gradients(model)
        return make_runtime_compatible(model)

    def _optimizer_block(self):
        artifacts, onnxblock, _ = training_api()
        if self.optimizer_name == "sgd":
            return artifacts.OptimType.SGD
        return onnxblock.optim.AdamW(betas=(0.9, 0.999), eps=1e-8, weight_decay=self.weight_decay)

    def _generate_artifacts(self) -> None:
        artifacts, _, _ = training_api()
        final = self.artifacts_dir
        # generated aside and moved into place, so a kill never leaves half a set of artifacts
        out = self.rundir / ".artifacts.tmp"
        if out.exists():
            shutil.rmtree(out)
        out.mkdir(parents=True)
        graph = self.training_graph()
        try:
            with quiet_native_stderr():
                artifacts.generate_artifacts(
                    graph,
                    requires_grad=self.trainable,
                    frozen_params=(self.frozen + self.buffers) or None,
                    loss=loss_block(self.loss, self.task.ignore_index),
                    optimizer=self._optimizer_block(),
                    artifact_directory=str(out),
                    loss_input_names=[self.output_name],
                )
        except Exception as exc:  # noqa: BLE001 - ORT raises RuntimeError/Fail with C++ text
            raise NotTrainableError(f"the training artifacts could not be generated: {str(exc).splitlines()[0]}") from None
        finally:
            ort().set_default_logger_severity(3)
        limit = runtime_info().max_ir_version
        for name in ("training_model.onnx", "eval_model.onnx", "optimizer_model.onnx"):
            path = out / name
            m = onnx.load(str(path))
            if m.ir_version > limit:
                m.ir_version = limit
                save_model(m, path)
        if final.exists():
            old = self.rundir / ".artifacts.old"
            shutil.rmtree(old, ignore_errors=True)
            os.replace(final, old)
            shutil.rmtree(old)
        os.replace(out, final)

    def _artifacts_complete(self) -> bool:
        return all((self.artifacts_dir / n).is_file() for n in
                   ("training_model.onnx", "eval_model.onnx", "optimizer_model.onnx", "checkpoint"))

    def _open(self, checkpoint: Path) -> None:
        _, _, api = training_api()
        a = self.artifacts_dir
        try:
            self._state = api.CheckpointState.load_checkpoint(str(checkpoint))
        except Exception as exc:  # noqa: BLE001
            raise CheckpointError(f"checkpoint '{checkpoint}' could not be read: {str(exc).splitlines()[0]}") from None
        options = session_options(self.intra_op_threads)
        self._module = api.Module(str(a / "training_model.onnx"), self._state, str(a / "eval_model.onnx"),
                                  device=self.device.name, session_options=options)
        self._optimizer = api.Optimizer(str(a / "optimizer_model.onnx"), self._module)
        self._input_order = list(self._module.input_names())

    # -- configuration and resume ----------------------------------------------------------------
    def _run_config(self, batch_size: int, epochs: int, shuffle: bool) -> dict:
        return {
            "model": _fingerprint(self.source), "loss": self.loss, "optimizer": self.optimizer_name,
            "lr": self.lr, "weight_decay": self.weight_decay if self.optimizer_name == "adamw" else None,
            "schedule": self.schedule, "warmup_steps": self.warmup_steps, "freeze": self.freeze,
            "seed": self.seed, "batch_size": batch_size, "epochs": epochs, "shuffle": shuffle,
            "task": self.task.name, "trainable": len(self.trainable), "frozen": len(self.frozen),
        }

    def _start(self, config: dict, resume: bool, overwrite: bool) -> None:
        self.rundir.mkdir(parents=True, exist_ok=True)
        if resume:
            self._resume(config)
        else:
            if self.checkpoint_path.exists() and not overwrite:
                raise CheckpointError(
                    f"run folder '{self.rundir}' already holds a checkpoint; pass --resume to continue it, "
                    "--overwrite to start again, or choose another --out"
                )
            self._generate_artifacts()
            save_model(self.source, self.rundir / "source.onnx")
            self._open(self.artifacts_dir / "checkpoint")
            self.epoch, self.step, self.history = 0, 0, []
            self._rng = np.random.default_rng(self.seed)
            self._config = config
            self._write_metrics()
            self._save_checkpoint()  # before step 1: a run killed from here on can be resumed

    def _resume(self, config: dict) -> None:
        if not self.checkpoint_path.is_file():
            if not any(self.rundir.iterdir()):
                raise CheckpointError(f"--resume: run folder '{self.rundir}' holds no run to continue; "
                                      "start the run without --resume")
            raise CheckpointError(f"--resume: run folder '{self.rundir}' holds no checkpoint to continue (the run "
                                  "was stopped before its first checkpoint was written; start it again with --overwrite)")
        verify_checkpoint(self.checkpoint_path)
        if not self._artifacts_complete():
            self._generate_artifacts()  # they depend only on the model and the settings checked below
        self._open(self.checkpoint_path)
        props = self._state.properties
        try:
            self.epoch = int(props["epoch"])
            self.step = int(props["step"])
            self._rng.bit_generator.state = json.loads(props["rng"])
            saved = json.loads(props["config"]) if "config" in props else self._read_metrics().get("config", {})
            history = json.loads(props["history"]) if "history" in props else self._read_metrics().get("history", [])
        except Exception:  # noqa: BLE001
            raise CheckpointError(f"checkpoint '{self.checkpoint_path}' lacks the run's progress (epoch, step, RNG)") from None
        changed = [k for k in ("model", *_CONFIG_KEYS) if k != "epochs" and saved.get(k) != config.get(k)]
        if changed:
            k = changed[0]
            raise CheckpointError(
                f"--resume: the run in '{self.rundir}' was started with {k}={saved.get(k)!r}, "
                f"now {k}={config.get(k)!r}; resume with the same settings or use another --out"
            )
        self.history = history[: self.epoch]
        self._config = config
        # a kill between the checkpoint's rename and the export leaves model.onnx and metrics.json
        # one epoch behind it: the checkpoint is the truth, so both are written again from it
        self.export()
        self._write_metrics()

    def _read_metrics(self) -> dict:
        path = self.rundir / "metrics.json"
        if not path.is_file():
            return {}
        try:
            return json.loads(path.read_text())
        except ValueError:
            raise CheckpointError(f"'{path}' is not valid JSON") from None

    def _save_checkpoint(self) -> None:
        _, _, api = training_api()
        props = self._state.properties
        props["epoch"] = int(self.epoch)
        props["step"] = int(self.step)
        props["rng"] = json.dumps(self._rng.bit_generator.state)
        props["config"] = json.dumps(self._config, sort_keys=True)
        props["history"] = json.dumps(self.history)
        save_checkpoint(lambda tmp: api.CheckpointState.save_checkpoint(self._state, str(tmp), include_optimizer_state=True),
                        self.checkpoint_path)

    def _write_metrics(self) -> None:
        doc = {"config": self._config, "device": self.device.name, "history": self.history}
        atomic_write_bytes(self.rundir / "metrics.json", json.dumps(doc, indent=2).encode())

    # -- training --------------------------------------------------------------------------------
    def _check(self, data, name: str) -> Dataset:
        from onnxforge.runtime.inference.session import _io_info_from_model

        inputs = _io_info_from_model(self.source)
        ds = as_dataset(data, [i.name for i in inputs], name, self.task.preparer(self.metadata))
        out = next(o for o in self.source.graph.output if o.name == self.output_name)
        target_shape = tuple(d.dim_value if d.HasField("dim_value") else None for d in out.type.tensor_type.shape.dim)
        classes = self.metadata.get("classes") or (target_shape[-1] if self.task.labels_are_classes else None)
        return check_dataset(ds, inputs, task=self.task.name if self.task.labels_are_classes else "regression",
                             classes=classes, target_shape=target_shape, ignore_index=self.task.ignore_index,
                             vocab=vocab_sizes(self.metadata))

    def fit(self, train, val=None, *, epochs: int = 10, batch_size: int = 32, shuffle: bool = True,
            resume: bool = False, overwrite: bool = False, callback=None) -> list[dict]:
        """Train for ``epochs`` epochs in total (a resumed run continues up to that number).

        ``train`` and ``val`` are :class:`Dataset` objects, ``(x, y)`` pairs or ``.npz`` paths.
        Returns the history: one dict per epoch with ``loss``, ``steps_per_s``, ``lr`` and, with
        ``val``, ``val_loss`` and the task's metrics prefixed ``val_``.
        """
        if not isinstance(epochs, int) or epochs < 1:
            raise ConfigError(f"epochs must be a positive integer; got {epochs!r}")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"batch size must be a positive integer; got {batch_size!r}")
        train = self._check(train, "training data")
        val = self._check(val, "validation data") if val is not None else None
        if self.threads == "auto":
            from onnxforge.runtime.ort.threads import resolve_threads

            shapes = {k: (min(batch_size, len(train)), *v.shape[1:]) for k, v in train.inputs.items()}
            self.intra_op_threads = resolve_threads("auto", self.source, shapes, training=True)
        self._start(self._run_config(batch_size, epochs, shuffle), resume, overwrite)
        self._module.train()
        from tqdm.auto import tqdm

        total_steps = -(-len(train) // batch_size) * epochs
        # one bar for the whole run (steps of all epochs); epoch lines are written above it
        bar = tqdm(total=total_steps, initial=self.step, unit="step", disable=not self.progress, file=sys.stderr,
                   mininterval=0.25, dynamic_ncols=True, leave=False)
        with bar:
            self._run_epochs(train, val, epochs, batch_size, shuffle, bar, callback)
        return self.history

    def _run_epochs(self, train, val, epochs, batch_size, shuffle, bar, callback) -> None:
        rt = ort()
        n = len(train)
        steps_per_epoch = -(-n // batch_size)
        total_steps = steps_per_epoch * epochs
        x_names = [k for k in self._input_order if k in train.inputs]
        module, optimizer = self._module, self._optimizer
        arrays = [train.inputs[k] for k in x_names]
        targets = train.y
        current_lr = None  # the rate last given to this optimizer
        constant_lr = self.schedule == "constant" and not self.warmup_steps
        show = not bar.disable
        # steps whose examples are gathered at once when shuffling: a whole number of batches of
        # up to 64 MB (the whole epoch for most datasets; at least one batch). Measured on the
        # 64-128-10 MLP against gathers of 256 KB, 1 MB and 4 MB, the whole epoch was as fast as
        # any (each new chunk is a fresh allocation), and memory stays bounded for large sets
        row_bytes = sum(x[:1].nbytes for x in arrays) + targets[:1].nbytes
        chunk = batch_size * max(1, (64 << 20) // max(1, row_bytes * batch_size))
        while self.epoch < epochs:
            epoch = self.epoch + 1
            rt.set_seed(self.seed * 100_003 + epoch)  # dropout masks depend on (seed, epoch) only
            order = self._rng.permutation(n) if shuffle else np.arange(n)
            loss_sum, seen = 0.0, 0
            bar.set_description(f"epoch {epoch}/{epochs}", refresh=False)
            t0, cpu0 = time.perf_counter(), time.process_time()
            step = self.step  # a local in the loop: every attribute access costs at 10,000 steps/s
            for start in range(0, n, batch_size):
                # batches are views: of the arrays in file order, or of a shuffled chunk gathered
                # once for several steps (a gather per step cost 4% of a small model's step)
                if shuffle:
                    if start % chunk == 0:
                        idx = order[start : start + chunk]
                        chunk_arrays, chunk_targets = [x[idx] for x in arrays], targets[idx]
                    at = slice(start % chunk, start % chunk + batch_size)
                    feeds, batch_targets = [x[at] for x in chunk_arrays], chunk_targets[at]
                else:
                    at = slice(start, start + batch_size)
                    feeds, batch_targets = [x[at] for x in arrays], targets[at]
                if not constant_lr or current_lr is None:  # a constant rate is set once
                    lr = learning_rate(self.schedule, self.lr, step, total_steps, self.warmup_steps)
                    if lr != current_lr:
                        optimizer.set_learning_rate(lr)
                        current_lr = lr
                loss = float(module(*feeds, batch_targets))
                if not math.isfinite(loss):
                    self.step = step
                    raise TrainingError(
                        f"training diverged: the loss became {loss} at epoch {epoch}, step {step + 1}; "
                        f"lower the learning rate (now {self.lr}). The last good checkpoint is kept."
                    )
                optimizer.step()
                module.lazy_reset_grad()
                step += 1
                size = min(batch_size, n - start)
                loss_sum += loss * size
                seen += size
                if show and step % 16 == 0:  # the bar redraws at most every 0.25 s anyway
                    bar.update(step - bar.n)
                    bar.set_postfix(loss=f"{loss_sum / seen:.4f}", refresh=False)
            self.step = step
            bar.update(step - bar.n)
            seconds, cpu_seconds = time.perf_counter() - t0, time.process_time() - cpu0
            self.epoch = epoch
            self._infer_session = None
            record = {"epoch": epoch, "loss": loss_sum / max(seen, 1), "lr": current_lr,
                      "steps_per_s": steps_per_epoch / seconds if seconds > 0 else None,
                      "seconds": seconds, "cpu_seconds": cpu_seconds}
            if val is not None:
                record.update({f"val_{k}": v for k, v in self.evaluate(val).items()})
            self.history.append(record)
            self._save_checkpoint()
            self.export()
            self._write_metrics()
            if self.progress and self.progress != "bar":
                bar.write(f"epoch {epoch}/{epochs}  " + format_record(record), file=sys.stderr)
            if callback is not None:
                callback(record)

    # -- results ---------------------------------------------------------------------------------
    def parameters(self) -> dict[str, np.ndarray]:
        """Current values of every parameter (trainable and frozen) and running statistic."""
        if self._module is None:
            return {t.name: numpy_helper.to_array(t) for t in self.source.graph.initializer
                    if t.name in self.trainable or t.name in self.frozen or t.name in self.buffers}
        return {name: np.array(self._state.parameters[name].data) for name in self.trainable + self.frozen + self.buffers}

    def inference_model(self) -> ModelProto:
        """The source model with the current weights, ``training_mode`` off, metadata kept (an
        unrolled LSTM or encoder-decoder build as its ``LSTM``-node twin: same weights and function,
        faster inference; see :mod:`onnxforge.runtime.passes.inference_form`)."""
        model = inference_form(self.source)
        values = self.parameters()
        for i, t in enumerate(model.graph.initializer):
            if t.name in values:
                model.graph.initializer[i].CopyFrom(numpy_helper.from_array(values[t.name].astype(np.float32), t.name))
        _set_training_mode(model, False)
        if self._config is not None:
            set_metadata(model, {"trained": {"epochs": self.epoch, "steps": self.step, "loss": self.loss,
                                             "optimizer": self.optimizer_name}})
        return model

    def session(self) -> Session:
        if self._infer_session is None:
            self._infer_session = Session(self.inference_model(), self.device, options=session_options(self.intra_op_threads))
        return self._infer_session

    def evaluate(self, data, batch_size: int = 1024) -> dict:
        """Loss and the task's metrics (accuracy for a classifier) with the current weights."""
        from onnxforge.runtime.tasks.evaluation import evaluate

        ds = data if isinstance(data, Dataset) and data.checked else self._check(data, "evaluation data")
        result = evaluate(self.session(), ds, loss=self.loss, batch_size=batch_size)
        result.pop("examples", None)
        return result

    def export(self, path=None) -> Path:
        """Write the inference model (atomically) to ``path`` or ``RUNDIR/model.onnx``."""
        return save_model(self.inference_model(), path or self.rundir / "model.onnx")
