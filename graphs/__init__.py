"""Builders that emit standard ONNX models (any ONNX tool can open what they write)."""

from onnxforge.graphs.mlp import mlp

__all__ = ["mlp"]
