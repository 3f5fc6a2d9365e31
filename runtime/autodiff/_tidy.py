"""Tidying of the emitted gradient nodes: constant folding, common subexpressions, dead nodes."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

__all__ = ["tidy"]

FOLD_LIMIT = 4096  # elements: larger folded values stay computed (ConstantOfShape, Expand...)
_NEVER_FOLD = {"RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike", "Multinomial",
               "Bernoulli", "Dropout"}


def _eval(node: onnx.NodeProto, values: list, opset: int = 17) -> list | None:
    from onnx.reference import ReferenceEvaluator

    inputs = []
    feeds = {}
    for i, (name, v) in enumerate(zip(node.input, values)):
        if not name:
            inputs.append("")
            continue
        key = f"in{i}"
        inputs.append(key)
        feeds[key] = v
    n = helper.make_node(node.op_type, inputs, [f"out{i}" for i in range(len(node.output))], **{
        a.name: helper.get_attribute_value(a) for a in node.attribute})
    graph = helper.make_graph(
        [n], "fold",
        [helper.make_tensor_value_info(k, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape) for k, v in feeds.items()],
        [helper.make_value_info(f"out{i}", onnx.TypeProto()) for i in range(len(node.output))])
    try:
        return list(ReferenceEvaluator(graph, opsets={"": opset}).run(None, feeds))
    except Exception:  # noqa: BLE001 - leave the node as it is
        return None


def _key(node):
    return (node.op_type, node.domain, tuple(node.input), len(node.output),
            tuple(a.SerializeToString() for a in sorted(node.attribute, key=lambda a: a.name)))


def _rename_inputs(node, replace):
    for i, x in enumerate(node.input):
        if x in replace:
            node.input[i] = replace[x]
    for a in node.attribute:
        for g in ([a.g] if a.type == onnx.AttributeProto.GRAPH else list(a.graphs)):
            for o in g.output:
                if o.name in replace:
                    o.name = replace[o.name]
            for n in g.node:
                _rename_inputs(n, replace)


def _graph_reads(node, needed):
    """The names a node's subgraphs read: their nodes' inputs, and outputs that are outer values
    passed through with no node in between (a Loop body returning a constant)."""
    for a in node.attribute:
        for g in ([a.g] if a.type == onnx.AttributeProto.GRAPH else list(a.graphs)):
            needed.update(o.name for o in g.output)
            for n in g.node:
                needed.update(i for i in n.input if i)
                _graph_reads(n, needed)


def tidy(nodes, initializers, consts, keep, opset: int = 17):
    """Fold the nodes whose inputs are all known, merge duplicates and drop nodes nothing in
    ``keep`` needs. Returns ``(nodes, initializers)``."""
    consts = dict(consts)
    folded: dict[str, np.ndarray] = {}
    out_nodes = []
    replace: dict[str, str] = {}
    seen: dict = {}
    for node in nodes:
        _rename_inputs(node, replace)
        has_graph = any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in node.attribute)
        if node.op_type not in _NEVER_FOLD and node.domain in ("", "ai.onnx") and not has_graph:
            if all((not x) or x in consts for x in node.input) and node.op_type != "Identity":
                vals = _eval(node, [consts.get(x) for x in node.input], opset)
                if vals is not None and all(isinstance(v, np.ndarray) for v in vals) and \
                        all(v.size <= FOLD_LIMIT for v in vals) and not any(o in keep for o in node.output):
                    for o, v in zip(node.output, vals):
                        consts[o] = v
                        folded[o] = v
                    continue
        k = _key(node)
        if k in seen and not any(o in keep for o in node.output):
            for a, b in zip(node.output, seen[k].output):
                replace[a] = b
            continue
        seen[k] = node
        out_nodes.append(node)
    # constants: value-equal folded results share one initialiser
    by_value: dict = {}
    init_by_name = {t.name: t for t in initializers}
    for name, v in list(folded.items()):
        key = (v.dtype.str, v.shape, v.tobytes())
        if key in by_value:
            replace[name] = by_value[key]
        else:
            by_value[key] = name
            init_by_name[name] = numpy_helper.from_array(np.asarray(v), name)
    for node in out_nodes:
        _rename_inputs(node, replace)
    # dead-node elimination (backwards from what is kept)
    needed = set(keep)
    live = []
    for node in reversed(out_nodes):
        if any(o in needed for o in node.output):
            live.append(node)
            needed.update(i for i in node.input if i)
            _graph_reads(node, needed)
    live.reverse()
    inits = [t for name, t in init_by_name.items() if name in needed]
    return live, inits
