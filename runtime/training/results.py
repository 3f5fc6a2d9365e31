"""What a :class:`~.trainer.Trainer` gives back, with the weights it holds now: the parameters and
their counts, the inference model (merged adapters for a LoRA run), a session of it, evaluation, and
the exported files. The Trainer is this class plus the run; these methods read only its public
attributes, declared below."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from onnx import ModelProto

from onnxforge.runtime.adapters import LoRARun
from onnxforge.runtime.adapters.external import ExternalWeights
from onnxforge.runtime.data.datasets import Dataset
from onnxforge.runtime.errors import ConfigError
from onnxforge.runtime.inference.session import Session
from onnxforge.runtime.modelio.card import ModelCard
from onnxforge.runtime.ort.device import Device
from onnxforge.runtime.tasks.evaluation import evaluate
from onnxforge.runtime.training.backends import TrainingBackend
from onnxforge.runtime.training.config import RunConfig
from onnxforge.runtime.training.export import inference_model
from onnxforge.runtime.training.parameters import ParameterPlan
from onnxforge.runtime.training.run_folder import RunFolder
from onnxforge.runtime.training.state import TrainingState
from onnxforge.runtime.training.validation import Validation

__all__ = ["TrainerResults"]


class TrainerResults:
    source: ModelProto                 # the model as given
    training_source: ModelProto        # what is trained (with a LoRA run's adapters)
    lora: LoRARun | None
    external: ExternalWeights | None  # a LoRA run's memory-mapped external-data weights
    plan: ParameterPlan
    trainable: list[str]
    frozen: list[str]
    buffers: list[str]
    state: TrainingState
    backend: TrainingBackend
    run: RunFolder
    config: RunConfig
    loss: str
    device: Device
    intra_op_threads: int | None
    validation: Validation

    def check_data(self, data: Any, name: str) -> Dataset:  # the Trainer's
        raise NotImplementedError

    def parameter_counts(self) -> dict:
        """``trainable_parameters`` and ``total_parameters``: elements trained, and in the model (with adapters)."""
        if self.lora is not None:
            return {"trainable_parameters": self.lora.trainable_parameters, "total_parameters": self.lora.total_parameters}
        return self.plan.counts(self.source)

    def parameters(self) -> dict[str, np.ndarray]:
        """Current values of every parameter (trainable and frozen) and running statistic."""
        if not self.state.started:
            return self.plan.values(self.training_source, {*self.trainable, *self.frozen, *self.buffers})
        return {**self.backend.parameters(), **self.plan.values(self.training_source, self.plan.held)}

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

    def _trained(self) -> dict | None:
        return None if not self.state.started else {"epochs": self.state.epoch, "steps": self.state.step, "loss": self.loss,
                                                    "optimizer": self.config.optimizer}

    def session(self) -> Session:
        """An inference session of the inference model with the current weights (kept until they change)."""
        return self.validation.export_session(self)

    def evaluate(self, data: Dataset | tuple | str | os.PathLike, batch_size: int = 1024) -> dict:
        """Loss and the task's metrics (accuracy for a classifier) with the current weights."""
        ds = data if isinstance(data, Dataset) and data.checked else self.check_data(data, "evaluation data")
        result = evaluate(self.validation.session(self), ds, loss=self.loss, batch_size=batch_size)
        result.pop("examples", None)
        return result

    def export(self, path: str | os.PathLike[str] | None = None) -> Path:
        """Write the inference model (atomically) to ``path`` or ``RUNDIR/model.onnx``; a LoRA run also
        writes ``model.lora.onnx`` and ``adapters.onnx_adapter`` beside it."""
        if self.external is not None and self.lora is not None:  # streamed into model.onnx.data, block by block
            model = inference_model(self.source, {}, self._trained())
            model = ModelCard.from_model(model).updated(self.lora.card()).write_into(model)
            written = self.lora.write_merged(model, Path(path or self.run.model), self.parameters())
        else:
            written = self.run.write_model(self.inference_model(), None if path is None else Path(path))
        if self.lora is not None:
            self.lora.write(written.parent, self.parameters(), self.run.write_model, self._trained())
        return written
