"""One vector-Jacobian rule per ONNX op, one op per file (``op_<name>.py``), in the manner of
``onnx/reference/ops``. Each module has ``OP_TYPE`` (the ONNX spec name), ``vjp(ctx, node, dys,
need)`` returning one gradient name (or None) per input of ``node``, and optionally
``NON_DIFFERENTIABLE_INPUTS`` (indices that never carry a gradient), ``SETTINGS_INPUTS``
(indices whose initialisers, even float ones, are build-time constants) and ``check(node, info)``
(a reason the rule cannot handle a form of the op, found before anything is built)."""

from onnxforge.runtime.autodiff.ops._op_list import NON_DIFFERENTIABLE, RULES, supported_ops

__all__ = ["NON_DIFFERENTIABLE", "RULES", "supported_ops"]
