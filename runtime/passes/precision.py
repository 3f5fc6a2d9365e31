"""A model computing in float64: what finite-difference checks compare gradients against (``onnxforge
gradcheck``, the rule tests, the node-test conformance run)."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

__all__ = ["to_float64"]

_F32, _F64 = TensorProto.FLOAT, TensorProto.DOUBLE
# inputs the spec types apart from the data (Resize's roi and scales, Upsample's scales): left in float32
_KEPT_INPUTS = {"Resize": (1, 2), "Upsample": (1,)}
_CAST_ATTRIBUTES = ("to", "dtype")


def _tensor(t: onnx.TensorProto) -> None:
    if t.data_type == _F32:
        t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(t).astype(np.float64), t.name))


def _graph(g: onnx.GraphProto, casts: tuple) -> None:
    kept = {n.input[i] for n in g.node for i in _KEPT_INPUTS.get(n.op_type, ()) if len(n.input) > i and n.input[i]}
    for vi in list(g.input) + list(g.output) + list(g.value_info):
        if vi.type.tensor_type.elem_type == _F32 and vi.name not in kept:
            vi.type.tensor_type.elem_type = _F64
    for t in g.initializer:
        if t.name not in kept:
            _tensor(t)
    for n in g.node:
        if n.op_type == "Constant" and any(o in kept for o in n.output):
            continue
        if n.op_type == "Constant" and n.attribute and n.attribute[0].name in ("value_float", "value_floats"):
            a = n.attribute[0]
            value = np.array(a.f if a.name == "value_float" else list(a.floats), np.float64)
            del n.attribute[:]
            n.attribute.append(helper.make_attribute("value", numpy_helper.from_array(value)))
        for a in n.attribute:
            if a.name in casts and a.type == onnx.AttributeProto.INT and a.i == _F32:
                a.i = _F64
            if a.type == onnx.AttributeProto.TENSOR:
                _tensor(a.t)
            if a.type == onnx.AttributeProto.GRAPH:
                _graph(a.g, casts)
            for sub in a.graphs:
                _graph(sub, casts)


def to_float64(model: onnx.ModelProto, *, stash_type: bool = False) -> onnx.ModelProto:
    """A copy of ``model`` with every float32 type, initialiser, constant, cast target (``to``,
    ``dtype``) and tensor attribute in float64, subgraphs included; the inputs the spec keeps apart
    from the data (Resize's roi and scales, Upsample's scales) stay float32. ``stash_type``: the
    normalisations' statistics too (ONNX Runtime computes them in float64; ``onnx.reference``'s
    LayerNormalization refuses that, so the default leaves them float32)."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    _graph(m.graph, _CAST_ATTRIBUTES + (("stash_type",) if stash_type else ()))
    return m
