"""Small helpers the training-form rewrites share: fresh names and the nodes of one rewrite."""

from __future__ import annotations

import numpy as np
from onnx import helper, numpy_helper

__all__ = ["Nodes", "opset_of"]


def opset_of(model) -> int:
    return next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))


class Nodes:
    """Nodes (and constant initialisers) written for one rewritten node, named under ``prefix``."""

    def __init__(self, prefix: str, opset: int):
        self.prefix = prefix
        self.opset = opset
        self.nodes: list = []
        self.initializers: list = []
        self._n = 0

    def name(self, base: str) -> str:
        self._n += 1
        return f"{self.prefix}/{base}_{self._n}"

    def op(self, op_type: str, inputs: list, out: str | None = None, **attrs) -> str:
        out = out or self.name(op_type.lower())
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=f"{out}.node", **attrs))
        return out

    def const(self, value, dtype=None) -> str:
        name = self.name("const")
        self.initializers.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def reduce_mean(self, x: str, axes: list[int]) -> str:
        """ReduceMean keeping dims (``axes`` an input from opset 18, an attribute before)."""
        if self.opset >= 18:
            return self.op("ReduceMean", [x, self.const(axes, np.int64)], keepdims=1)
        return self.op("ReduceMean", [x], keepdims=1, axes=list(axes))
