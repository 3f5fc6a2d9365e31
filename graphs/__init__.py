"""Builders that emit standard ONNX models (any ONNX tool can open what they write)."""

from onnxforge.graphs.captioner import captioner
from onnxforge.graphs.convnet import convnet
from onnxforge.graphs.lstm import lstm
from onnxforge.graphs.mlp import mlp
from onnxforge.graphs.nplm import nplm
from onnxforge.graphs.seq2seq import seq2seq

__all__ = ["captioner", "convnet", "lstm", "mlp", "nplm", "seq2seq"]
