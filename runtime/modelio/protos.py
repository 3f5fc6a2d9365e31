"""The ONNX vocabulary every room speaks, at the ground floor: the default domain and its opset, a
model's deep copy, the walk through subgraphs, a value's dims, and one node writer with fresh names.

The rooms above (plugins, graphs, passes, training's step graphs, convert) write ONNX with these
instead of their own copies; autodiff keeps its own writer (its emitter, typed for the rules)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
from onnx import AttributeProto, GraphProto, ModelProto, NodeProto, ValueInfoProto, helper, numpy_helper

__all__ = ["DEFAULT_DOMAINS", "is_default_domain", "default_opset", "copy_model", "subgraphs", "walk_graphs",
           "dims", "static_dims", "NodeWriter"]

DEFAULT_DOMAINS = ("", "ai.onnx")  # the two spellings of the standard operator set


def is_default_domain(domain: str) -> bool:
    return domain in DEFAULT_DOMAINS


def default_opset(model: ModelProto, missing: int | None = None) -> int:
    """The model's version of the standard operator set; ``missing`` where it imports none
    (StopIteration when ``missing`` is None: callers that require one)."""
    found = (o.version for o in model.opset_import if o.domain in DEFAULT_DOMAINS)
    return next(found) if missing is None else next(found, missing)


def copy_model(model: ModelProto) -> ModelProto:
    """A deep copy of ``model`` (what a functional pass edits instead of its argument)."""
    out = ModelProto()
    out.CopyFrom(model)
    return out


def subgraphs(node: NodeProto) -> list[GraphProto]:
    """The graphs held in ``node``'s attributes (If's branches, Loop's and Scan's bodies)."""
    found: list[GraphProto] = []
    for attr in node.attribute:
        if attr.type == AttributeProto.GRAPH:
            found.append(attr.g)
        elif attr.type == AttributeProto.GRAPHS:
            found.extend(attr.graphs)
    return found


def walk_graphs(graph: GraphProto) -> Iterator[GraphProto]:
    """``graph`` and every graph nested in its nodes, outermost first."""
    yield graph
    for node in graph.node:
        for sub in subgraphs(node):
            yield from walk_graphs(sub)


def dims(value: ValueInfoProto) -> tuple[int | str | None, ...]:
    """A tensor value's dims: a number, a symbolic name, or None where neither is known."""
    return tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or None)
                 for d in value.type.tensor_type.shape.dim)


def static_dims(value: ValueInfoProto) -> tuple[int | None, ...]:
    """A tensor value's dims with every symbolic or unknown one as None."""
    return tuple(d.dim_value if d.HasField("dim_value") else None for d in value.type.tensor_type.shape.dim)


class NodeWriter:
    """Nodes and initialisers written for one graph (or one rewrite of it) under fresh names:
    ``fresh("Gemm")`` is ``Gemm``, then ``Gemm_1``, ``Gemm_2``... (after ``prefix/`` if one is given).
    ``opset`` is the standard opset the nodes are written for."""

    def __init__(self, opset: int, prefix: str = ""):
        self.opset, self.prefix = opset, prefix
        self.nodes: list[NodeProto] = []
        self.initializers: list[Any] = []
        self._count: dict[str, int] = {}

    def fresh(self, base: str) -> str:
        n = self._count.get(base, 0)
        self._count[base] = n + 1
        name = base if n == 0 else f"{base}_{n}"
        return f"{self.prefix}/{name}" if self.prefix else name

    def node(self, op_type: str, inputs: list[str], outputs: list[str] | None = None, *, name: str | None = None,
             domain: str = "", **attrs: Any) -> Any:
        """Append one node; returns its output name (its list of names when it has several)."""
        name = name or self.fresh(op_type)
        if outputs is None:
            outputs = [f"{name}.out"]
        self.nodes.append(helper.make_node(op_type, inputs, outputs, name=name, domain=domain or None, **attrs))
        return outputs[0] if len(outputs) == 1 else outputs

    def initializer(self, name: str, value: Any, dtype: Any = None) -> str:
        """Append the initialiser ``name`` holding ``value``; returns the name."""
        self.initializers.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name
