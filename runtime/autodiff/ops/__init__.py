"""One vector-Jacobian rule per ONNX op, one op per file (``op_<name>.py``), in the manner of
``onnx/reference/ops``; each module is listed once in ``_op_list``, and ``_rule`` states the
contract a module meets (``OP_TYPE``, ``vjp``, ``GRAD_OUTPUTS``, ``NON_DIFFERENTIABLE_INPUTS``,
``SETTINGS_INPUTS``, ``check``) as types."""

from onnxforge.runtime.autodiff.ops._op_list import NON_DIFFERENTIABLE, RULES, supported_ops
from onnxforge.runtime.autodiff.ops._rule import ZERO, Rule

__all__ = ["NON_DIFFERENTIABLE", "RULES", "Rule", "ZERO", "supported_ops"]
