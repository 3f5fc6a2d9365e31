"""ReduceMax: see _extreme (ties share dY evenly)."""
from onnxforge.runtime.autodiff.ops._extreme import vjp  # noqa: F401

OP_TYPE = "ReduceMax"
NON_DIFFERENTIABLE_INPUTS = (1,)
