"""The node writer the training-form rewrites share: :class:`~onnxforge.runtime.modelio.protos.NodeWriter`
with the names of one rewrite (``prefix/base_n``, one counter) and a name-first ``op``."""

from __future__ import annotations

from typing import Any

import numpy as np

from onnxforge.runtime.modelio.protos import NodeWriter, default_opset

__all__ = ["Nodes", "opset_of"]

opset_of = default_opset  # the model's standard opset (the rewrites require one)


class Nodes(NodeWriter):
    """Nodes (and constant initialisers) written for one rewritten node, named under ``prefix``."""

    def __init__(self, prefix: str, opset: int):
        super().__init__(opset, prefix)
        self._n = 0

    def name(self, base: str) -> str:
        self._n += 1
        return f"{self.prefix}/{base}_{self._n}"

    def op(self, op_type: str, inputs: list, out: str | None = None, **attrs: Any) -> str:
        out = out or self.name(op_type.lower())
        self.node(op_type, inputs, [out], name=f"{out}.node", **attrs)
        return out

    def const(self, value: Any, dtype: Any = None) -> str:
        return self.initializer(self.name("const"), value, dtype)

    def reduce_mean(self, x: str, axes: list[int]) -> str:
        """ReduceMean keeping dims (``axes`` an input from opset 18, an attribute before)."""
        if self.opset >= 18:
            return self.op("ReduceMean", [x, self.const(axes, np.int64)], keepdims=1)
        return self.op("ReduceMean", [x], keepdims=1, axes=list(axes))
