"""What a model's values are, before any rule runs: the prepared copy (functions inlined, opset
raised), each value's element type and dims (:class:`ValueInfo`), the outer names a node's subgraphs
read, and which values can carry a derivative. The core and the control-flow rules read these."""

from __future__ import annotations

import os

import onnx

from onnxforge.runtime.autodiff._emitter import FLOAT_TYPES
from onnxforge.runtime.autodiff._errors import AutodiffError

MIN_OPSET = 17
MAX_IR_VERSION = 10  # ONNX Runtime 1.19 loads IR <= 10; emitted models keep the input's IR when lower


def _load(model) -> onnx.ModelProto:
    if isinstance(model, (str, os.PathLike)):
        try:
            return onnx.load(os.fspath(model))
        except Exception as exc:
            raise AutodiffError(f"cannot read the model {os.fspath(model)!r}: {exc}") from exc
    if not isinstance(model, onnx.ModelProto):
        raise AutodiffError(f"expected an onnx.ModelProto or a path; got {type(model).__name__}")
    m = onnx.ModelProto()
    m.CopyFrom(model)
    return m


def _default_opset(model: onnx.ModelProto) -> int | None:
    for o in model.opset_import:
        if o.domain in ("", "ai.onnx"):
            return o.version
    return None


def prepare(model) -> onnx.ModelProto:
    """A copy of ``model`` ready to differentiate: model-local functions inlined, the default-domain
    opset raised to 17 when it is lower (by ONNX's version converter), shapes inferred."""
    model = _load(model)
    if model.functions:
        from onnx import inliner

        model = inliner.inline_local_functions(model)
    opset = _default_opset(model)
    if opset is None:
        raise AutodiffError("the model imports no default-domain (ai.onnx) opset")
    if opset < MIN_OPSET:
        try:
            from onnx import version_converter

            model = version_converter.convert_version(model, MIN_OPSET)
        except Exception as exc:
            raise AutodiffError(f"the model uses opset {opset}; gradients need opset {MIN_OPSET} or later and "
                                f"ONNX's version converter could not raise it: {exc}") from exc
    return model


class ValueInfo(dict):
    """name -> (elem_type or None, dims or None); ``sequences``: the names that are sequences of
    tensors (their entry gives the element type of the tensors they hold, dims None)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.sequences: set = set()
        self.opset: int | None = None


def _infer(model: onnx.ModelProto) -> ValueInfo:
    try:
        inferred = onnx.shape_inference.infer_shapes(model, data_prop=True)
    except Exception:  # noqa: BLE001 - fall back to what the model declares
        inferred = model
    info = ValueInfo()
    info.opset = _default_opset(model)  # for the control-flow rules' checks of their subgraphs
    g = inferred.graph
    for vi in list(g.input) + list(g.value_info) + list(g.output):
        if vi.type.HasField("sequence_type") and vi.type.sequence_type.elem_type.HasField("tensor_type"):
            info[vi.name] = (vi.type.sequence_type.elem_type.tensor_type.elem_type or None, None)
            info.sequences.add(vi.name)
            continue
        t = vi.type.tensor_type
        if not vi.type.HasField("tensor_type"):
            kind = vi.type.WhichOneof("value")
            if kind:  # "sequence", "optional", "map", "sparse_tensor": the element-type slot names the kind
                info[vi.name] = (kind.replace("_type", ""), None)
            continue
        dims = None
        if t.HasField("shape"):
            dims = [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in t.shape.dim]
        info[vi.name] = (t.elem_type or None, dims)
    for init in g.initializer:
        info[init.name] = (init.data_type, list(init.dims))
    return info


def _subgraph_inputs(node) -> set:
    """Outer-scope names a node's subgraphs read (an outer value a subgraph returns as its output,
    with no node in between, is read too: an If branch passing a value through)."""
    names: set[str] = set()
    for a in node.attribute:
        graphs = [a.g] if a.type == onnx.AttributeProto.GRAPH else list(a.graphs)
        for g in graphs:
            local = {i.name for i in g.input} | {i.name for i in g.initializer}
            for n in g.node:
                local.update(n.output)
            for n in g.node:
                names.update(i for i in n.input if i and i not in local)
                names.update(_subgraph_inputs(n) - local)
            names.update(o.name for o in g.output if o.name and o.name not in local)
    return names


def _node_inputs(node) -> list:
    return [i for i in node.input if i] + sorted(_subgraph_inputs(node))


def _is_float(info, name) -> bool:
    return info.get(name, (None, None))[0] in FLOAT_TYPES


def _may_carry(info, name) -> bool:
    """Whether ``name`` can carry a derivative: a float tensor, a sequence/optional/map (which may
    hold float tensors), or a value whose type shape inference could not find. Only tensors known
    to be integer, boolean or string are piecewise constant (their derivative is zero)."""
    elem = info.get(name, (None, None))[0]
    return elem is None or isinstance(elem, str) or elem in FLOAT_TYPES


def _kind(info, name) -> str:
    elem = info.get(name, (None, None))[0]
    if isinstance(elem, str):
        return f"a {elem} value"
    if elem is None:
        return "a value of unknown type"
    return "a float tensor" if elem in FLOAT_TYPES else "a non-float tensor"
