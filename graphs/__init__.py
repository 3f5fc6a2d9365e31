"""Builders that emit standard ONNX models (any ONNX tool can open what they write).

``GraphBuilder`` (with ``float_input``) is what the builders assemble graphs with; a plugin's
activation is applied to one (see :mod:`onnxforge.plugins`), and tests build small graphs with it.
``TRAINING_MODE`` names the bool initialiser a builder's Dropout reads, which the trainer turns on
for the training graph (:mod:`onnxforge.runtime.passes.gradient_form`)."""

from onnxforge.graphs._common import TRAINING_MODE, GraphBuilder, float_input
from onnxforge.graphs.captioner import captioner
from onnxforge.graphs.convnet import convnet
from onnxforge.graphs.lstm import lstm
from onnxforge.graphs.mlp import mlp
from onnxforge.graphs.nplm import nplm
from onnxforge.graphs.seq2seq import seq2seq

__all__ = ["TRAINING_MODE", "GraphBuilder", "captioner", "convnet", "float_input", "lstm", "mlp", "nplm", "seq2seq"]
