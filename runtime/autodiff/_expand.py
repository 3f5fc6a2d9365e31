"""Function ops without a rule, differentiated through the function body ONNX defines for them.

Many default-domain ops are defined by ONNX as a function of simpler ops (``Gelu``, ``Mish``,
``GroupNormalization``, ``RMSNormalization``, ``RotaryEmbedding``, ``Attention``,
``SoftmaxCrossEntropyLoss``...: ``onnx.defs`` schemas with a function body, or a
context-dependent one built for the node's attributes and input types). A node of such an op that
lies on the path to the loss and has no rule of its own (or a form its rule does not cover) is
replaced by that body, for the node's opset, before differentiating; the body's ops then meet the
rules like any others (and are refused by name if one of them has none). A direct rule, where
there is one, is preferred: it is smaller and faster than the expanded body."""

from __future__ import annotations

import onnx
from onnx import FunctionProto, TypeProto, helper

__all__ = ["expand_functions", "function_body"]

_MAX_ROUNDS = 6  # bodies may call function ops themselves (Attention -> Softmax, ...)


def function_body(node: onnx.NodeProto, opset: int, info: dict, prefix: str) -> list | None:
    """The nodes of ``node``'s function body for ``opset`` (edges renamed under ``prefix``,
    the node's inputs and outputs kept), or None when ONNX defines none usable at that opset."""
    if node.domain not in ("", "ai.onnx"):
        return None
    try:
        schema = onnx.defs.get_schema(node.op_type, opset, "")
    except Exception:  # noqa: BLE001 - unknown op or version
        return None
    call = onnx.NodeProto()
    call.CopyFrom(node)
    given = {a.name for a in call.attribute}
    for name, a in schema.attributes.items():
        if name not in given and a.default_value.name:
            call.attribute.append(a.default_value)
    fp = _body_proto(schema, call, opset, info)
    if fp is None:
        return None
    from onnx.backend.test.case.node import function_expand_helper

    nodes = list(function_expand_helper(call, fp, prefix))
    if not _same_ops(fp, opset):
        raised = _converted(nodes, call, fp, opset, info)
        if raised is None:
            return None
        nodes = raised
    for k, n in enumerate(nodes):
        n.name = f"{prefix}{k}_{n.op_type}"
    return nodes


def _body_proto(schema, call, opset, info) -> FunctionProto | None:
    plain = [v for v in schema.function_opset_versions if v <= opset]
    ctx_dep = [v for v in schema.context_dependent_function_opset_versions if v <= opset]
    fp = FunctionProto()
    try:
        if plain:
            fp.ParseFromString(schema.get_function_with_opset_version(max(plain)))
            return fp
        if ctx_dep:
            types = [_type(info, i).SerializeToString() for i in call.input]
            raw = schema.get_context_dependent_function_with_opset_version(max(ctx_dep), call.SerializeToString(),
                                                                             types)
            if not raw:
                return None
            fp.ParseFromString(raw)
            return fp
    except Exception:  # noqa: BLE001 - ONNX cannot build the body for these types
        return None
    return None


def _type(info, name) -> TypeProto:
    if not name or name not in info:
        return TypeProto()
    elem, dims = info[name]
    if elem is None or isinstance(elem, str):
        return TypeProto()
    return helper.make_tensor_type_proto(elem, dims)


def _same_ops(fp: FunctionProto, opset: int) -> bool:
    """The body was written for an opset whose versions of its ops are the model's versions."""
    version = next((o.version for o in fp.opset_import if o.domain in ("", "ai.onnx")), opset)
    if version == opset:
        return True
    for n in fp.node:
        if n.domain not in ("", "ai.onnx"):
            return False
        try:
            if onnx.defs.get_schema(n.op_type, version, "").since_version != \
                    onnx.defs.get_schema(n.op_type, opset, "").since_version:
                return False
        except Exception:  # noqa: BLE001
            return False
    return True


def _converted(nodes, call, fp, opset, info) -> list | None:
    """The body's nodes, written for an older opset, raised to ``opset`` by ONNX's version
    converter (None when it cannot)."""
    from onnx import version_converter

    version = next((o.version for o in fp.opset_import if o.domain in ("", "ai.onnx")), opset)
    ins = [helper.make_value_info(i, _type(info, i)) for i in dict.fromkeys(call.input) if i]
    outs = [helper.make_value_info(o, _type(info, o)) for o in call.output if o]
    if any(not v.type.HasField("tensor_type") for v in ins):
        return None
    m = helper.make_model(helper.make_graph(nodes, "body", ins, outs),
                          opset_imports=[helper.make_opsetid("", version)])
    try:
        raised = version_converter.convert_version(m, opset)
    except Exception:  # noqa: BLE001 - no adapter for one of the body's ops
        return None
    return list(raised.graph.node)


def expand_functions(model: onnx.ModelProto, wants, infer) -> onnx.ModelProto:
    """Replace, in place, the nodes ``wants(model, info)`` selects (a set of node indices) by their
    function bodies (in rounds, for bodies that call function ops); ``infer(model)`` gives the
    value facts. Returns ``model``."""
    opset = max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    taken = {n.name for n in model.graph.node}
    for _ in range(_MAX_ROUNDS):
        info = infer(model)
        chosen = wants(model, info)
        if not chosen:
            break
        out, changed = [], False
        for k, node in enumerate(model.graph.node):
            body = None
            if k in chosen:
                prefix = _prefix(node, k, taken)
                body = function_body(node, opset, info, prefix)
            if body:
                out.extend(body)
                changed = True
            else:
                out.append(node)
        if not changed:
            break
        kept = [onnx.NodeProto() for _ in out]
        for dst, src in zip(kept, out):
            dst.CopyFrom(src)
        del model.graph.node[:]
        model.graph.node.extend(kept)
    return model


def _prefix(node, k, taken) -> str:
    base = f"{node.name or node.op_type}/expanded_"
    name, i = base, 0
    while any(t.startswith(name) for t in taken):
        i += 1
        name = f"{base}{i}_"
    taken.add(name)
    return name
