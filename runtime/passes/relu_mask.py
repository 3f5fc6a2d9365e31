"""``Relu`` in training graphs as ``x * Cast(x > 0)``: the same function, a much faster gradient.

ONNX Runtime 1.19's CPU ``ReluGrad`` kernel takes about 4 ns per element (1.0 ms for a 256x1024
activation, 26 us for 64x128) where a ``Mul`` takes well under 1 ns. Written as ``x * mask`` the
gradient is one ``Mul`` (``dY * mask``; the mask comes from ``Greater``, which has no gradient).
Measured with raw ONNX Runtime training, one thread, AdamW: the 64-128-10 MLP (batch 64) 1.43x the
steps/s, the 16-32 ConvNet 1.16x, the 784-1024-1024-10 MLP (batch 256) 1.07x, with bit-identical
parameters after an epoch. Only the training graph is rewritten; inference models keep ``Relu``.
The one difference: ``-inf`` gives NaN (``-inf * 0``) where ``Relu`` gives 0.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import ModelProto, TensorProto, helper, numpy_helper

from onnxforge.runtime.modelio.protos import copy_model, default_opset, is_default_domain
from onnxforge.runtime.passes.base import Rewrite

__all__ = ["ReluMask", "relu_as_mask"]

_ZERO = "relu_as_mask.zero"


def relu_as_mask(model: ModelProto) -> ModelProto:
    """``model`` with every float32 ``Relu`` of its main graph rewritten (a new model; ``model``
    itself when it has none)."""
    relus = {i for i, n in enumerate(model.graph.node) if n.op_type == "Relu" and is_default_domain(n.domain)}
    opset = default_opset(model, 0)
    if not relus or opset < 7:  # Greater broadcasts a scalar from opset 7
        return model
    try:
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False)
    except Exception:  # noqa: BLE001 - without types nothing is rewritten
        return model
    types = {v.name: v.type.tensor_type.elem_type
             for v in (*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output)}
    types.update({t.name: t.data_type for t in model.graph.initializer})
    nodes, changed = [], False
    for i, n in enumerate(model.graph.node):
        if i in relus and types.get(n.input[0]) == TensorProto.FLOAT:
            x, y, name = n.input[0], n.output[0], n.name or n.output[0]
            nodes += [helper.make_node("Greater", [x, _ZERO], [f"{name}.positive"], name=f"{name}.positive"),
                      helper.make_node("Cast", [f"{name}.positive"], [f"{name}.mask"], name=f"{name}.mask",
                                       to=TensorProto.FLOAT),
                      helper.make_node("Mul", [x, f"{name}.mask"], [y], name=name)]
            changed = True
        else:
            nodes.append(n)
    if not changed:
        return model
    out = copy_model(model)
    del out.graph.node[:]
    out.graph.node.extend(nodes)
    out.graph.initializer.append(numpy_helper.from_array(np.array(0.0, np.float32), _ZERO))
    return out


class ReluMask(Rewrite):
    """The pass of :func:`relu_as_mask` (training graphs only)."""

    name = "relu-mask"
    function = staticmethod(relu_as_mask)
