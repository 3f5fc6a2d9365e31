"""A training step as one standard ONNX model, run by any ONNX Runtime.

:func:`build_step` turns a forward model, a loss and an optimizer into one ``ModelProto`` (forward,
loss, backward through :mod:`onnxforge.runtime.autodiff`, optimizer update); :class:`StepRunner`
runs it in a plain ``InferenceSession`` with the parameters and optimizer state kept in ONNX
Runtime's buffers between steps. The ``onnx`` training backend is built on them. :mod:`.split` is
the same step split in two (gradient, then update) for data-parallel workers that average their
gradients in between. :class:`Nodes` and :func:`opset_of` are the helpers its rewrites write nodes with.
"""

from onnxforge.runtime.training.stepgraph._rewrite import Nodes, opset_of
from onnxforge.runtime.training.stepgraph.build import StepGraph, build_eval, build_step
from onnxforge.runtime.training.stepgraph.forward import LR, NEW, SEED, STEP
from onnxforge.runtime.training.stepgraph.optim import BETAS, EPS, OPTIMIZERS, moment_names

__all__ = ["BETAS", "EPS", "LR", "NEW", "Nodes", "OPTIMIZERS", "SEED", "STEP", "StepGraph", "build_eval", "build_step",
           "moment_names", "opset_of"]
