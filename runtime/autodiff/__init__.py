"""Reverse-mode differentiation of ONNX graphs into standard ONNX (default domain, opset >= 17).

``gradient_model(model, wrt, of)`` returns a model that also outputs ``NAME_grad`` for each name
in ``wrt``: the gradient of the sum of the elements of ``of``. ``build_gradients`` is the lower
level the training backend builds on (it returns the gradients' names, leaving outputs alone).
Only onnx and numpy are needed; the result runs on any ONNX runtime.
"""

from onnxforge.runtime.autodiff._core import (MAX_IR_VERSION, MIN_OPSET, build_gradients, describe_missing,
                                              gradient_model, missing_rules, prepare)
from onnxforge.runtime.autodiff._errors import AutodiffError, UnsupportedOpError
from onnxforge.runtime.autodiff.ops import NON_DIFFERENTIABLE, supported_ops
from onnxforge.runtime.autodiff.passes import batchnorm_training_form

__all__ = [
    "AutodiffError",
    "MAX_IR_VERSION",
    "MIN_OPSET",
    "NON_DIFFERENTIABLE",
    "UnsupportedOpError",
    "batchnorm_training_form",
    "build_gradients",
    "describe_missing",
    "gradient_model",
    "missing_rules",
    "prepare",
    "supported_ops",
]
