"""Rewrites of a built step to nodes ONNX Runtime's CPU kernels run faster, with equal results.

``Where(c, g, 0)`` (a masked gradient: Dropout's, Clip's, Where's; Relu's rule writes the
multiplication itself) becomes ``Mul(g, Cast(c))``:
ONNX Runtime's ``Where`` with a broadcast scalar is several times slower than a multiplication
(measured on the 2-core machine, one thread: 3.2 ms against 0.60 ms on a [256, 1024] tensor,
33 us against 22 us on [64, 128]). The values are equal wherever ``g`` is finite.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

__all__ = ["faster_kernels"]


def _zero_scalars(model: onnx.ModelProto) -> set:
    return {t.name for t in model.graph.initializer
            if t.data_type == TensorProto.FLOAT and not list(t.dims) and float(numpy_helper.to_array(t)) == 0.0}


def faster_kernels(model: onnx.ModelProto) -> onnx.ModelProto:
    """Rewrite ``model`` in place (see the module docstring); returns it."""
    zeros = _zero_scalars(model)
    nodes = []
    for node in model.graph.node:
        if node.op_type == "Where" and node.domain in ("", "ai.onnx") and len(node.input) == 3 \
                and node.input[2] in zeros and node.input[1] not in zeros:
            cond, value, _ = node.input
            mask = f"{node.output[0]}.mask"
            nodes.append(helper.make_node("Cast", [cond], [mask], name=f"{mask}.node", to=TensorProto.FLOAT))
            nodes.append(helper.make_node("Mul", [value, mask], list(node.output), name=node.name or f"{mask}.mul"))
            continue
        nodes.append(node)
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    return model
