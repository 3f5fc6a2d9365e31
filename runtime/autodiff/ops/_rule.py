"""The contract of a rule module (``op_<name>.py``), as types.

A rule module has:

- ``OP_TYPE``: the ONNX spec name; each module is listed once in ``_op_list``.
- ``vjp(ctx, node, dys, need) -> grads``: ``ctx`` the :class:`Emitter` the rule writes through,
  ``node`` the forward node, ``dys`` one cotangent name (or None where none reaches the output) per
  output of ``node``, ``need`` one bool per input (on the path to the loss). It returns one entry
  per input: a gradient name, :data:`ZERO` where the derivative is exactly zero, or None where
  ``need`` is False. None for a needed input is an error, never a silent zero.
- ``GRAD_OUTPUTS`` (default ``(0,)``): the outputs whose cotangents ``vjp`` uses, as indices,
  ``"all"`` or a function of the node. An output outside it that lies on the path to the loss
  makes the build refuse the node up front.
- ``NON_DIFFERENTIABLE_INPUTS``: input indices that never carry a gradient (indices, shapes); an
  active value there is refused.
- ``SETTINGS_INPUTS``: inputs whose initialisers, even float ones, are build-time constants.
- ``check(node, info) -> str | None``: a reason the rule cannot handle a form of the op.
- ``NON_TENSOR = True``: the rule handles sequence/optional values (others refuse them).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Final, Protocol

if TYPE_CHECKING:
    import onnx

    from onnxforge.runtime.autodiff._emitter import Emitter

__all__ = ["ZERO", "Cotangents", "Grads", "Needs", "Rule"]


class _Zero(str):
    """The gradient that is exactly zero (the output does not depend on that input)."""

    def __repr__(self) -> str:
        return "ZERO"


ZERO: Final = _Zero("<zero>")

Cotangents = Sequence["str | None"]
Needs = Sequence[bool]
Grads = Sequence["str | None"]


class Rule(Protocol):
    """What ``_op_list`` requires of each rule module."""

    OP_TYPE: str

    def vjp(self, ctx: Emitter, node: onnx.NodeProto, dys: Cotangents, need: Needs) -> Grads: ...
