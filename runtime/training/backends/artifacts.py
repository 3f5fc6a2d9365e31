"""The ONNX Runtime training-artifacts backend (onnxruntime-training's ``generate_artifacts`` and
its ``Module``/``Optimizer``/``CheckpointState``).

Its folder (``RUNDIR/artifacts/``) holds the training, eval and optimizer graphs and the initial
checkpoint; they depend only on the model and the settings, are generated aside and moved into
place, so a kill never leaves half a set. Its checkpoints are ONNX Runtime checkpoint files with
the optimizer state and the loop's properties."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import onnx
from onnx import ModelProto

from onnxforge.runtime.errors import CheckpointError, ModelError, NotTrainableError, OnnxforgeError, TrainingError
from onnxforge.runtime.inference.session import session_options
from onnxforge.runtime.modelio.files import save_model
from onnxforge.runtime.ort.distribution import ort, quiet_native_stderr, runtime_info, training_api
from onnxforge.runtime.ort.failures import failure_line, run_errors
from onnxforge.runtime.passes import pipelines
from onnxforge.runtime.passes.base import copy_model
from onnxforge.runtime.passes.gradient_form import untrainable_ops
from onnxforge.runtime.tasks.losses import loss_block
from onnxforge.runtime.training.backends.base import BackendState, TrainingSpec

__all__ = ["ArtifactsBackend"]

_FILES = ("training_model.onnx", "eval_model.onnx", "optimizer_model.onnx", "checkpoint")


class ArtifactsBackend:
    """:class:`~onnxforge.runtime.training.backends.base.TrainingBackend` on ONNX Runtime's
    training artifacts (see the module docstring)."""

    name: ClassVar[str] = "artifacts"

    @classmethod
    def available(cls) -> str | None:
        try:
            training_api()
        except OnnxforgeError as exc:
            return str(exc)
        return None

    def __init__(self, spec: TrainingSpec):
        self.spec = spec
        blockers = untrainable_ops(spec.model, list(spec.trainable))
        if blockers:
            raise NotTrainableError("ONNX Runtime cannot compute gradients through: " + ", ".join(blockers)
                                    + "; such a model can be run but not trained")
        self.folder: Path | None = None
        self._threads: int | None = None
        # ONNX Runtime training's objects, after _open
        self._state: Any = None
        self._module: Any = None
        self._optimizer: Any = None
        self._order: list[int] = []
        self._lr = None

    @property
    def _dir(self) -> Path:
        if self.folder is None:
            raise TrainingError("the artifacts backend was not prepared: call prepare(folder, threads) first")
        return self.folder

    def training_graph(self) -> ModelProto:
        """The forward graph as the training artifacts are generated from it (the training pipeline;
        a copy even where the pipeline changes nothing, since ``generate_artifacts`` is handed it)."""
        return copy_model(pipelines.for_training(self.spec.model))

    # -- folder ----------------------------------------------------------------------------------
    def prepare(self, folder: Path, threads: int | None) -> None:
        self.folder, self._threads = Path(folder), threads
        if not all((self.folder / n).is_file() for n in _FILES):
            self._generate()

    def _optimizer_block(self):
        artifacts, onnxblock, _ = training_api()
        if self.spec.optimizer == "sgd":
            return artifacts.OptimType.SGD
        return onnxblock.optim.AdamW(betas=(0.9, 0.999), eps=1e-8, weight_decay=self.spec.weight_decay)

    def _generate(self) -> None:
        artifacts, _, _ = training_api()
        final, spec = self._dir, self.spec
        out = final.with_name(f".{final.name}.tmp")
        if out.is_symlink() or out.is_file():
            out.unlink()
        elif out.exists():
            shutil.rmtree(out)
        out.mkdir(parents=True)
        try:
            with quiet_native_stderr():
                artifacts.generate_artifacts(
                    self.training_graph(), requires_grad=list(spec.trainable),
                    frozen_params=list(spec.frozen + spec.state_buffers) or None,
                    loss=loss_block(spec.loss, spec.ignore_index), optimizer=self._optimizer_block(),
                    artifact_directory=str(out), loss_input_names=[spec.output])
        except Exception as exc:  # noqa: BLE001 - ORT raises RuntimeError/Fail with C++ text
            shutil.rmtree(out, ignore_errors=True)
            raise NotTrainableError(f"the training artifacts could not be generated: {str(exc).splitlines()[0]}") from None
        finally:
            ort().set_default_logger_severity(3)
        limit = runtime_info().max_ir_version
        for name in _FILES[:3]:
            m = onnx.load(str(out / name))
            if m.ir_version > limit:
                m.ir_version = limit
                save_model(m, out / name)
        if final.exists():
            old = final.with_name(f".{final.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(final, old)
            shutil.rmtree(old)
        os.replace(out, final)

    def _open(self, checkpoint: Path) -> None:
        _, _, api = training_api()
        try:
            state = api.CheckpointState.load_checkpoint(str(checkpoint))
        except Exception as exc:  # noqa: BLE001
            raise CheckpointError(f"checkpoint '{checkpoint}' could not be read: {str(exc).splitlines()[0]}") from None
        a = self._dir
        self._state = state
        try:
            self._module = api.Module(str(a / "training_model.onnx"), state, str(a / "eval_model.onnx"),
                                      device=self.spec.device.name, session_options=self._options())
            self._optimizer = api.Optimizer(str(a / "optimizer_model.onnx"), self._module)
        except run_errors() as exc:
            raise ModelError(f"ONNX Runtime cannot load the training artifacts in '{a}': {failure_line(exc)}") from None
        names = list(self._module.input_names())
        self._order = [list(self.spec.inputs).index(n) for n in names if n in self.spec.inputs]
        self._lr = None
        self._module.train()

    def _options(self):
        options = session_options(self._threads)
        options.log_severity_level = 4  # a failed node reaches the user as one TrainingError line, not a log too
        return options

    def _opened(self):
        if self._module is None:
            self._open(self.folder / "checkpoint")  # the initial weights
        return self._module

    # -- steps -----------------------------------------------------------------------------------
    def seed(self, value: int) -> None:
        ort().set_seed(int(value))

    def train_step(self, inputs, targets, lr):
        module = self._module or self._opened()
        if lr != self._lr:
            self._optimizer.set_learning_rate(lr)
            self._lr = lr
        order = self._order
        try:  # ORT's C++ failure (running a node) as one line
            loss = float(module(*[inputs[i] for i in order], targets) if len(order) > 1 else module(inputs[0], targets))
            self._optimizer.step()
        except run_errors() as exc:
            raise TrainingError(f"a training step failed in ONNX Runtime: {failure_line(exc)}") from None
        module.lazy_reset_grad()
        return loss

    def eval_step(self, inputs, targets) -> float:
        module = self._opened()
        module.eval()
        try:
            return float(module(*[inputs[i] for i in self._order], targets))
        except run_errors() as exc:
            raise TrainingError(f"an evaluation step failed in ONNX Runtime: {failure_line(exc)}") from None
        finally:
            module.train()

    # -- state -----------------------------------------------------------------------------------
    def _names(self) -> tuple[str, ...]:
        return self.spec.trainable + self.spec.frozen + self.spec.state_buffers

    def parameters(self) -> dict[str, np.ndarray]:
        self._opened()
        return {name: np.array(self._state.parameters[name].data) for name in self._names()}

    def state(self) -> BackendState:
        parameters = self.parameters()
        props = self._state.properties  # ORT keeps AdamW's moments inside, unexposed
        return BackendState(parameters, {}, int(props["step"]) if "step" in props else 0)

    def load_state(self, state: BackendState) -> None:
        self._opened()
        for name, value in state.parameters.items():
            self._state.parameters[name].data = np.ascontiguousarray(value, np.float32)

    def save_checkpoint(self, path: Path, properties: dict) -> None:
        _, _, api = training_api()
        self._opened()
        props = self._state.properties
        for key, value in properties.items():
            props[key] = value
        api.CheckpointState.save_checkpoint(self._state, str(path), include_optimizer_state=True)

    def load_checkpoint(self, path: Path) -> dict:
        self._open(Path(path))
        props = self._state.properties
        return dict(iter(props))  # Properties iterate as (name, value)
