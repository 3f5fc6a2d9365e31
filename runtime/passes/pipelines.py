"""The pipelines onnxforge runs, named in one place.

``TRAINING_SOURCE``: the model every training backend is given (``TrainingSpec.model``): plugins
inlined, the ``training_mode`` switch on.

``TRAINING``: what ONNX Runtime's training artifacts are generated from: ``TRAINING_SOURCE``'s
passes, then the node forms ORT's gradient builders need, Relu as a mask (a faster gradient), IR
and opset lowered to what the runtime accepts.

``INFERENCE``: what an inference session loads: plugin ops pointed at their kernels, IR and opset
lowered to what the runtime accepts.

``EXPORT``: what a trained model is written as: an unrolled LSTM or encoder-decoder build becomes
its ``LSTM``-node twin with the same weights (train fast, serve fast), the ``training_mode``
switch off.

Every pass is functional (see :mod:`.base`): the model given is never changed.
"""

from __future__ import annotations

from onnx import ModelProto

from onnxforge.runtime.passes.base import Sequential
from onnxforge.runtime.passes.compat import RuntimeCompatible
from onnxforge.runtime.passes.gradient_form import GradientForms, TrainingMode
from onnxforge.runtime.passes.inference_form import InferenceForm
from onnxforge.runtime.passes.plugin_forms import InlinePlugins, PluginKernels
from onnxforge.runtime.passes.relu_mask import ReluMask

__all__ = ["EXPORT", "INFERENCE", "TRAINING", "TRAINING_SOURCE", "for_export", "for_inference", "for_training",
           "for_training_source"]

TRAINING_SOURCE = Sequential("training-source", InlinePlugins(), TrainingMode(True))
TRAINING = Sequential("training", *TRAINING_SOURCE.passes, GradientForms(), ReluMask(), RuntimeCompatible())
INFERENCE = Sequential("inference", PluginKernels(), RuntimeCompatible())
EXPORT = Sequential("export", InferenceForm(), TrainingMode(False))


def for_training_source(model: ModelProto) -> ModelProto:
    """``model`` through :data:`TRAINING_SOURCE`."""
    return TRAINING_SOURCE(model).model


def for_training(model: ModelProto) -> ModelProto:
    """``model`` through :data:`TRAINING`."""
    return TRAINING(model).model


def for_inference(model: ModelProto) -> ModelProto:
    """``model`` through :data:`INFERENCE`."""
    return INFERENCE(model).model


def for_export(model: ModelProto) -> ModelProto:
    """``model`` through :data:`EXPORT`."""
    return EXPORT(model).model
