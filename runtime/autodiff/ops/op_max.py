"""Max (variadic, broadcasting): see _minmax."""
from onnxforge.runtime.autodiff.ops._minmax import vjp  # noqa: F401

OP_TYPE = "Max"
