"""The pipelines onnxforge runs, named in one place.

``TRAINING``: what training artifacts are generated from (after the trainer has set its
``training_mode`` flag): plugins inlined, the node forms ORT's gradient builders need, Relu as a
mask (a faster gradient), IR and opset lowered to what the runtime accepts.

``INFERENCE``: what an inference session loads: plugin ops pointed at their kernels, IR and opset
lowered to what the runtime accepts.

``EXPORT``: what a trained model is written as: an unrolled LSTM or encoder-decoder build becomes
its ``LSTM``-node twin with the same weights (train fast, serve fast).

Every pass is functional (see :mod:`.base`): the model given is never changed.
"""

from __future__ import annotations

from onnx import ModelProto

from onnxforge.runtime.passes.base import Sequential
from onnxforge.runtime.passes.compat import RuntimeCompatible
from onnxforge.runtime.passes.gradient_form import GradientForms
from onnxforge.runtime.passes.inference_form import InferenceForm
from onnxforge.runtime.passes.plugin_forms import InlinePlugins, PluginKernels
from onnxforge.runtime.passes.relu_mask import ReluMask

__all__ = ["EXPORT", "INFERENCE", "TRAINING", "for_export", "for_inference", "for_training"]

TRAINING = Sequential("training", InlinePlugins(), GradientForms(), ReluMask(), RuntimeCompatible())
INFERENCE = Sequential("inference", PluginKernels(), RuntimeCompatible())
EXPORT = Sequential("export", InferenceForm())


def for_training(model: ModelProto) -> ModelProto:
    """``model`` through :data:`TRAINING`."""
    return TRAINING(model).model


def for_inference(model: ModelProto) -> ModelProto:
    """``model`` through :data:`INFERENCE`."""
    return INFERENCE(model).model


def for_export(model: ModelProto) -> ModelProto:
    """``model`` through :data:`EXPORT`."""
    return EXPORT(model).model
