"""Constant folding: ``Constant`` nodes become initialisers, and nodes whose inputs are all known
are evaluated once (with ``onnx.reference``) and replaced by their results."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import ModelProto, helper, numpy_helper

from onnxforge.runtime.errors import ConversionError
from onnxforge.runtime.modelio.protos import copy_model, default_opset
from onnxforge.runtime.passes.base import FunctionalPass, PassResult

__all__ = ["FoldConstants", "constant_value", "fold_constants", "remove_unused"]

# Ops that must run every time (random draws) or that have no inputs but are not constants.
_NEVER_FOLD = {"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial",
               "Bernoulli", "Dropout"}


def constant_value(node: onnx.NodeProto) -> np.ndarray:
    """The value a ``Constant`` node produces, whichever attribute holds it."""
    attr = node.attribute[0]
    kind = attr.name
    if kind == "value":
        return numpy_helper.to_array(attr.t)
    if kind == "value_float":
        return np.array(attr.f, np.float32)
    if kind == "value_floats":
        return np.array(list(attr.floats), np.float32)
    if kind == "value_int":
        return np.array(attr.i, np.int64)
    if kind == "value_ints":
        return np.array(list(attr.ints), np.int64)
    if kind == "value_string":
        return np.array(attr.s.decode())
    if kind == "value_strings":
        return np.array([s.decode() for s in attr.strings])
    raise ConversionError(f"Constant node '{node.name}' holds its value in '{kind}', which onnxforge cannot read")


def _evaluate(node: onnx.NodeProto, values: list, opset: int) -> list:
    from onnx.reference import ReferenceEvaluator

    names = [f"in{i}" for i in range(len(node.input))]
    inputs = [n if node.input[i] else "" for i, n in enumerate(names)]
    copy = helper.make_node(node.op_type, inputs, [f"out{i}" for i in range(len(node.output))], domain=node.domain)
    copy.attribute.extend(node.attribute)
    feeds = {n: v for n, v, orig in zip(names, values, node.input) if orig}
    graph = helper.make_graph(
        [copy], "fold",
        [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape) for n, v in feeds.items()],
        [helper.make_tensor_value_info(f"out{i}", onnx.TensorProto.UNDEFINED, None) for i in range(len(node.output))],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    return list(ReferenceEvaluator(model).run(None, feeds))


def fold_constants(model: ModelProto, *, keep: set | frozenset = frozenset(), opset: int | None = None) -> tuple[ModelProto, int]:
    """Return a copy of ``model`` with constants folded, and how many nodes were removed.

    ``keep`` names initialisers that must stay as they are (parameters): nodes reading them are
    not folded. Only default-domain nodes are folded; custom ops are left alone.
    """
    out = copy_model(model)
    graph = out.graph
    if opset is None:
        opset = default_opset(out, 17)
    graph_inputs = {i.name for i in graph.input}
    known = {t.name: numpy_helper.to_array(t) for t in graph.initializer
             if t.name not in keep and t.name not in graph_inputs}
    new_inits: dict[str, np.ndarray] = {}
    kept_nodes, folded = [], 0
    for node in graph.node:
        default = node.domain in ("", "ai.onnx")
        if default and node.op_type == "Constant" and len(node.attribute) == 1:
            value = constant_value(node)
            if value.dtype.kind not in "US":
                known[node.output[0]] = value
                new_inits[node.output[0]] = value
                folded += 1
                continue
        ready = [i for i in node.input if i]
        if (default and ready and node.op_type not in _NEVER_FOLD and all(i in known for i in ready)
                and not any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in node.attribute)):
            try:
                results = _evaluate(node, [known.get(i) for i in node.input], opset)
            except Exception:  # noqa: BLE001 - an op the reference cannot run stays in the graph
                results = None
            if results is not None:
                for name, value in zip(node.output, results):
                    if name:
                        known[name] = np.asarray(value)
                        new_inits[name] = np.asarray(value)
                folded += 1
                continue
        kept_nodes.append(node)
    del graph.node[:]
    graph.node.extend(kept_nodes)
    existing = {t.name for t in graph.initializer}
    settings = _setting_only(kept_nodes, set(new_inits))
    const_nodes = []
    for name, value in new_inits.items():
        if name in existing:
            continue
        if name in settings or value.dtype.kind != "f" or value.ndim == 0:
            # a setting (shape, scales, ratio, ...) or a non-float: a Constant, never a parameter
            const_nodes.append(helper.make_node("Constant", [], [name], name=f"{name}.const",
                                                value=numpy_helper.from_array(value, name)))
        else:
            graph.initializer.append(numpy_helper.from_array(value, name))
    if const_nodes:
        rest = list(graph.node)
        del graph.node[:]
        graph.node.extend(const_nodes + rest)
    for vi in list(graph.value_info):
        if vi.name in new_inits:
            graph.value_info.remove(vi)
    _prune(out)
    return out, folded


class FoldConstants(FunctionalPass):
    """The pass of :func:`fold_constants`; ``keep`` names parameters that must stay initialisers."""

    name = "fold-constants"

    def __init__(self, keep: set | frozenset = frozenset(), opset: int | None = None):
        self.keep, self.opset = frozenset(keep), opset

    def call(self, model: ModelProto) -> PassResult:
        out, folded = fold_constants(model, keep=self.keep, opset=self.opset)
        pruned = (len(out.graph.node), len(out.graph.initializer)) != (len(model.graph.node), len(model.graph.initializer))
        return PassResult(out, bool(folded) or pruned)


# Inputs that configure an op rather than carry data that is learnt: (op, input index).
_SETTING_INPUTS = {
    "Resize": {1, 2, 3}, "Upsample": {1}, "Dropout": {1, 2}, "Clip": {1, 2}, "Pad": {1, 2, 3}, "Reshape": {1},
    "Expand": {1}, "Slice": {1, 2, 3, 4}, "Tile": {1}, "Squeeze": {1}, "Unsqueeze": {1}, "ReduceMean": {1},
    "ReduceSum": {1}, "ReduceMax": {1}, "ReduceMin": {1}, "ReduceProd": {1}, "ReduceL2": {1}, "Split": {1},
    "ConstantOfShape": {0}, "Range": {0, 1, 2}, "TopK": {1}, "OneHot": {1, 2}, "LSTM": {4}, "GRU": {4}, "RNN": {4},
    "Gather": {1}, "GatherElements": {1}, "ScatterElements": {1}, "Where": {0}, "Pow": {1},
}


def _setting_only(nodes, names: set) -> set:
    """Those of ``names`` that every consumer reads as a setting (see ``_SETTING_INPUTS``)."""
    data_use = set()
    for node in nodes:
        slots = _SETTING_INPUTS.get(node.op_type, set())
        for i, name in enumerate(node.input):
            if name in names and i not in slots:
                data_use.add(name)
    return names - data_use


def remove_unused(model: ModelProto) -> ModelProto:
    """A copy of ``model`` without the initialisers and nodes nothing reads; graph outputs are
    always kept."""
    out = copy_model(model)
    _prune(out)
    return out


def _prune(model: ModelProto) -> None:
    """:func:`remove_unused` on a model this module owns (in place)."""
    graph = model.graph
    needed = {o.name for o in graph.output}
    live_nodes = []
    for node in reversed(list(graph.node)):
        if any(o in needed for o in node.output if o) or not node.output:
            live_nodes.append(node)
            needed.update(i for i in node.input if i)
            for attr in node.attribute:  # subgraphs read outer values by name
                for g in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                    for n in g.node:
                        needed.update(n.input)
    live_nodes.reverse()
    del graph.node[:]
    graph.node.extend(live_nodes)
    inits = [t for t in graph.initializer if t.name in needed]
    del graph.initializer[:]
    graph.initializer.extend(inits)
