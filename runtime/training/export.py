"""The inference model a run exports: the source model with the trained weights, ``training_mode``
off, metadata kept (an unrolled LSTM or encoder-decoder build as its ``LSTM``-node twin: same
weights and function, faster inference; see :mod:`onnxforge.runtime.passes.inference_form`)."""

from __future__ import annotations

import numpy as np
from onnx import ModelProto, numpy_helper

from onnxforge.runtime.modelio.files import set_metadata
from onnxforge.runtime.passes.gradient_form import TRAINING_MODE
from onnxforge.runtime.passes.inference_form import inference_form

__all__ = ["set_training_mode", "inference_model"]


def set_training_mode(model: ModelProto, on: bool) -> ModelProto:
    """Set the model's ``training_mode`` initialiser (Dropout's switch), in place."""
    for t in model.graph.initializer:
        if t.name == TRAINING_MODE:
            t.CopyFrom(numpy_helper.from_array(np.array(on), TRAINING_MODE))
    return model


def inference_model(source: ModelProto, values: dict, trained: dict | None = None) -> ModelProto:
    """``source`` in inference form with initialisers replaced by ``values``; ``trained`` (epochs,
    steps, loss, optimizer) goes into the metadata."""
    model = inference_form(source)
    for i, t in enumerate(model.graph.initializer):
        if t.name in values:
            model.graph.initializer[i].CopyFrom(numpy_helper.from_array(values[t.name].astype(np.float32), t.name))
    set_training_mode(model, False)
    if trained is not None:
        set_metadata(model, {"trained": trained})
    return model
