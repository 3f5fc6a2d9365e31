"""Errors of the differentiation package (all are onnxforge errors a user can cause)."""

from __future__ import annotations

from onnxforge.runtime.errors import NotTrainableError

__all__ = ["AutodiffError", "UnsupportedOpError"]


class AutodiffError(NotTrainableError):
    """A model cannot be differentiated as asked (unknown names, integer outputs, old opset...)."""


class UnsupportedOpError(AutodiffError):
    """An op on a path that needs a gradient has no vector-Jacobian rule (or a form the rule
    does not cover). ``missing`` lists ``(op_type, node_name, output_name)`` triples."""

    def __init__(self, message: str, missing: list[tuple[str, str, str]] | None = None):
        super().__init__(message)
        self.missing = list(missing or [])
