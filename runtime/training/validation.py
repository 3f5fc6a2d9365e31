"""Validation after every epoch without a new inference session every epoch.

Building the export-form model and an ONNX Runtime session for each epoch's validation cost a
digits run (45 steps of about 0.1 ms an epoch) more than its steps: 3-8 ms an epoch. A
:class:`WeightsFedSession` is built once per run from the source model with ``training_mode`` off
and its parameters turned into graph inputs that keep their initialisers (ONNX Runtime's
overridable initialisers); each epoch the trainer hands it the current weights, which ride along
with the data feeds. The source form computes what the exported form computes (an unrolled LSTM
build and its ``LSTM``-node twin: same function, see :mod:`onnxforge.runtime.passes.inference_form`),
so the metrics are the same numbers."""

from __future__ import annotations

from typing import Any

import numpy as np
from onnx import ModelProto, helper

from onnxforge.runtime.inference.session import Session, session_options, validate_feeds
from onnxforge.runtime.passes.base import copy_model
from onnxforge.runtime.passes.gradient_form import TrainingMode

__all__ = ["WeightsFedSession", "Validation"]


def _weights_as_inputs(model: ModelProto, names) -> ModelProto:
    out = TrainingMode(False)(copy_model(model)).model
    wanted, listed = set(names), {i.name for i in out.graph.input}
    out.graph.input.extend(helper.make_tensor_value_info(t.name, t.data_type, list(t.dims))
                           for t in out.graph.initializer if t.name in wanted and t.name not in listed)
    return out


class WeightsFedSession(Session):
    """An inference :class:`Session` of ``model`` whose initialisers named in ``names`` are fed
    from ``weights`` (set before each use) on every run; ``inputs`` stay the model's data inputs."""

    def __init__(self, model: ModelProto, names, device, *, options=None, constants: dict | None = None):
        super().__init__(_weights_as_inputs(model, names), device, options=options)
        self.weights: dict = {}
        self.constants = dict(constants or {})  # inputs fed unchanged on every run (memory-mapped weights)
        if self.constants:
            self.inputs = [i for i in self.inputs if i.name not in self.constants]
            self._fast_spec = None

    def run(self, feeds: dict, outputs: list[str] | None = None, run_options: Any = None) -> dict[str, np.ndarray]:
        ready = self._fast_feeds(feeds) or validate_feeds(feeds, self.inputs)
        names = self._output_names if outputs is None else self._checked_outputs(outputs)
        fed = {**ready, **self.weights, **self.constants}
        if self._kernel_guard is None:
            values = self._run_public(names, fed, run_options)
        else:
            with self._kernel_guard():
                values = self._run_public(names, fed, run_options)
        return dict(zip(names, values))


class Validation:
    """The sessions a trainer evaluates with: one :class:`WeightsFedSession` for the run, given the
    current weights at each call; the export-form session (:meth:`export_session`, rebuilt after the
    weights change) where the task's metrics decode (they run the model the way a user of
    ``model.onnx`` does)."""

    def __init__(self) -> None:
        self._session: WeightsFedSession | None = None
        self._export: Session | None = None

    def weights_changed(self) -> None:
        self._export = None

    def export_session(self, trainer: Any) -> Session:
        if self._export is None:
            self._export = Session(trainer.inference_model(), trainer.device,
                                   options=session_options(trainer.intra_op_threads))
        return self._export

    def session(self, trainer: Any) -> Session:
        if trainer.task.decodes:
            return self.export_session(trainer)
        weights = trainer.parameters()
        if self._session is None:
            constants = trainer.lora.constants if trainer.lora is not None else None
            self._session = WeightsFedSession(trainer.training_source, weights, trainer.device,
                                              options=session_options(trainer.intra_op_threads), constants=constants)
        self._session.weights = weights
        return self._session
