"""The standard-ONNX training backend: one training-step model run by a plain ``InferenceSession``.

The step model (forward, loss, backward, optimizer update; only ``ai.onnx`` ops, see
:mod:`onnxforge.runtime.training.stepgraph`) is built from the forward model when the first batch
arrives (its shape fixes the data's non-batch dims); parameters, AdamW moments and running
statistics stay in ONNX Runtime's buffers between steps (on CUDA, GPU memory), so any ONNX Runtime
trains: onnxruntime-training 1.19's plain session, the maintained onnxruntime and onnxruntime-gpu.

Its folder (``RUNDIR/onnx/``) gets ``training_model.onnx``, the step model, written for
inspection (atomically); nothing is read back from it. Checkpoints are ``.npz`` files (no pickle):
``param/NAME``, ``opt/NAME`` (moments), ``step`` and the loop's properties as JSON.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import ClassVar

import numpy as np
from onnx import ModelProto, numpy_helper

from onnxforge.runtime.autodiff import AutodiffError, describe_missing, missing_rules
from onnxforge.runtime.errors import CheckpointError, NotTrainableError, OnnxforgeError, TrainingError
from onnxforge.runtime.inference.session import session_options
from onnxforge.runtime.modelio.files import save_model
from onnxforge.runtime.ort.distribution import ort
from onnxforge.runtime.ort.failures import failure_line, run_errors
from onnxforge.runtime.training.backends.base import BackendState, TrainingSpec
from onnxforge.runtime.training.stepgraph import build_eval, build_step, moment_names
from onnxforge.runtime.training.stepgraph.runner import EvalRunner, StepRunner

__all__ = ["OnnxBackend"]


class OnnxBackend:
    """:class:`~onnxforge.runtime.training.backends.base.TrainingBackend` on a standard-ONNX
    training-step model (see the module docstring)."""

    name: ClassVar[str] = "onnx"

    @classmethod
    def available(cls) -> str | None:
        try:
            ort()
        except OnnxforgeError as exc:
            return str(exc)
        return None

    def __init__(self, spec: TrainingSpec):
        self.spec = spec
        blockers = missing_rules(spec.model, list(spec.trainable), spec.output, reasons=True)
        if blockers:
            raise NotTrainableError(f"no gradient in standard ONNX through: {describe_missing(blockers)}; such a model "
                                    "can be run but not trained")
        inits = {t.name: t for t in spec.model.graph.initializer}
        names = spec.trainable + spec.frozen + spec.state_buffers
        self._initial = {n: numpy_helper.to_array(inits[n]).astype(np.float32) for n in names}
        self._moments = {m: np.zeros_like(self._initial[p]) for p in spec.trainable
                         for m in moment_names(spec.optimizer, p)}
        self._values: dict[str, np.ndarray] | None = None  # numpy state while no runner holds it
        self._steps = 0
        self._seed = 0
        self.folder: Path | None = None
        self._threads: int | None = None
        self._runner: StepRunner | None = None
        self._eval: EvalRunner | None = None

    # -- graphs ----------------------------------------------------------------------------------
    def _build_step(self, feed_shapes: dict):
        s = self.spec
        try:
            return build_step(s.model, output=s.output, loss=s.loss, optimizer=s.optimizer,
                              trainable=list(s.trainable), buffers=list(s.state_buffers), feed_shapes=feed_shapes,
                              ignore_index=s.ignore_index, weight_decay=s.weight_decay, constants=list(s.constants),
                              views=True)
        except AutodiffError as exc:
            raise NotTrainableError(f"the training step could not be built: {exc}") from None

    def training_graph(self, feed_shapes: dict | None = None) -> ModelProto:
        """The training-step model (for a batch of ``feed_shapes``; the runner's, once training)."""
        if self._runner is not None and feed_shapes is None:
            return self._runner.graph.model
        return self._build_step(feed_shapes or {}).model

    def _eval_graph(self):
        s = self.spec
        return build_eval(s.model, output=s.output, loss=s.loss, params=list(s.trainable),
                          buffers=list(s.state_buffers), ignore_index=s.ignore_index, constants=list(s.constants))

    def prepare(self, folder: Path, threads: int | None) -> None:
        self.folder, self._threads = Path(folder), threads

    def _options(self):
        """Session options: the thread count, and intra-op workers that sleep instead of spinning
        between kernels (measured on the 2-core machine shared with other processes, alternating
        in one process: the T20 h64 LSTM on 2 threads 2.0x as fast, the 784-1024-1024-10 MLP 1.2x)."""
        options = session_options(self._threads)
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 4  # a failed node reaches the user as one TrainingError line, not a log too
        return options

    def _start(self, inputs) -> StepRunner:
        graph = self._build_step({n: tuple(x.shape) for n, x in zip(self.spec.inputs, inputs)})
        values = self._current()
        self._runner = StepRunner(graph, values, options=self._options(),
                                  device=self.spec.device.name, steps=self._steps, constants=self.spec.constants)
        self._runner.seed(self._seed)
        self._values = None
        if self.folder is not None:
            self.folder.mkdir(parents=True, exist_ok=True)
            save_model(graph.model, self.folder / "training_model.onnx")
        return self._runner

    # -- steps -----------------------------------------------------------------------------------
    def seed(self, value: int) -> None:
        self._seed = int(value)
        if self._runner is not None:
            self._runner.seed(self._seed)

    def train_step(self, inputs, targets, lr) -> float:
        try:  # ORT's C++ failure (loading the step model or running a node) as one line
            runner = self._runner or self._start(inputs)
            return runner.step(inputs, targets, lr)
        except run_errors() as exc:
            step = (self._runner.steps if self._runner is not None else self._steps) + 1
            raise TrainingError(f"training step {step} failed in ONNX Runtime: {failure_line(exc)}") from None

    def eval_step(self, inputs, targets) -> float:
        try:
            if self._eval is None:
                self._eval = EvalRunner(self._eval_graph(), options=self._options(),
                                        device=self.spec.device.name, constants=self.spec.constants)
            return self._eval.loss(inputs, targets, self._current())
        except run_errors() as exc:
            raise TrainingError(f"evaluation step failed in ONNX Runtime: {failure_line(exc)}") from None

    # -- state -----------------------------------------------------------------------------------
    def _current(self) -> dict:
        """Every carried value (parameters, moments, statistics) as numpy arrays."""
        if self._runner is not None:
            return self._runner.state()
        if self._values is None:
            self._values = {**self._initial, **self._moments}
        return self._values

    def parameters(self) -> dict[str, np.ndarray]:
        values = self._current()
        return {n: np.array(values.get(n, self._initial[n])) for n in self._initial}

    def state(self) -> BackendState:
        values = self._current()
        steps = self._runner.steps if self._runner is not None else self._steps
        return BackendState(self.parameters(), {m: np.array(values[m]) for m in self._moments}, steps)

    def load_state(self, state: BackendState) -> None:
        given = {**state.parameters, **(state.optimizer or {})}
        unknown = set(given) - set(self._initial) - set(self._moments)
        if unknown:
            raise CheckpointError(f"the state names values this model does not have: {sorted(unknown)[:5]}")
        self._steps = int(state.step)
        if self._runner is not None:
            self._runner.load(given, self._steps)
        else:
            # moments stay float64 (exact back to the carried buffers, see stepgraph.pack)
            self._values = {**self._current(), **{k: np.array(v, np.float64 if k in self._moments else np.float32)
                                                  for k, v in given.items()}}

    def save_checkpoint(self, path: Path, properties: dict) -> None:
        st = self.state()
        arrays = {f"param/{k}": v for k, v in st.parameters.items()}
        arrays.update({f"opt/{k}": v for k, v in st.optimizer.items()})
        arrays["step"] = np.array(st.step, np.int64)
        arrays["properties"] = np.frombuffer(json.dumps(properties, sort_keys=True).encode(), np.uint8)
        with open(path, "wb") as f:
            np.savez(f, **arrays)  # type: ignore[arg-type]  # numpy's stub reads ** as its allow_pickle flag

    def load_checkpoint(self, path: Path) -> dict:
        try:
            with np.load(str(path), allow_pickle=False) as data:
                arrays = {k: data[k] for k in data.files}
            props = json.loads(bytes(arrays.pop("properties")).decode())
            step = int(arrays.pop("step"))
        except (OSError, ValueError, KeyError, zipfile.BadZipFile, UnicodeDecodeError) as exc:
            raise CheckpointError(f"checkpoint '{path}' could not be read: {str(exc).splitlines()[0]}") from None
        params = {k[6:]: v for k, v in arrays.items() if k.startswith("param/")}
        moments = {k[4:]: v for k, v in arrays.items() if k.startswith("opt/")}
        shapes = {k: v.shape for k, v in {**self._initial, **self._moments}.items()}
        if {k: v.shape for k, v in {**params, **moments}.items()} != shapes or set(params) != set(self._initial):
            raise CheckpointError(f"checkpoint '{path}' holds other parameters or optimizer state than this run "
                                  "(another model, optimizer or backend)")
        self.load_state(BackendState(params, moments, step))
        return props
