"""The inference model a run exports: the source model with the trained weights, through the
export pipeline (:data:`onnxforge.runtime.passes.pipelines.EXPORT`: ``training_mode`` off, an
unrolled LSTM or encoder-decoder build as its ``LSTM``-node twin with the same weights and
function, faster inference), metadata kept and the run's record added to the model card."""

from __future__ import annotations

import numpy as np
from onnx import ModelProto, numpy_helper

from onnxforge.runtime.modelio.card import ModelCard
from onnxforge.runtime.passes import pipelines
from onnxforge.runtime.passes.base import copy_model

__all__ = ["inference_model"]


def inference_model(source: ModelProto, values: dict, trained: dict | None = None) -> ModelProto:
    """``source`` with initialisers replaced by ``values``, in export form; ``trained`` (epochs,
    steps, loss, optimizer) goes into the model card. ``source`` is left as it was."""
    model = copy_model(source)
    for i, t in enumerate(model.graph.initializer):
        if t.name in values:
            model.graph.initializer[i].CopyFrom(numpy_helper.from_array(values[t.name].astype(np.float32), t.name))
    model = pipelines.for_export(model)
    if trained is not None:
        model = ModelCard.from_model(model).updated({"trained": trained}).write_into(model)
    return model
