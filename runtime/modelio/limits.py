"""Limits on what a model file may ask of the machine, checked before ONNX Runtime sees it.

A few kilobytes of ONNX can ask for more than any machine has: a model-local function that calls
itself (ONNX Runtime recurses until it crashes), functions that call others many times over
(each level multiplies the nodes inlining makes: 30 levels of 2 calls are 2^30 nodes from 2 KB),
``If`` subgraphs nested deep (session creation doubles in time per level), millions of empty
nodes, or tensors that a small declaration makes large: a sparse initialiser (densified when
the session is made), ``ConstantOfShape`` and ``Expand`` with a constant shape. The loader refuses
such a model with one :class:`~onnxforge.runtime.errors.ModelError` line naming the limit:

========================  =======================================  ==========================
limit                     what it bounds                           default (environment)
========================  =======================================  ==========================
``max_nodes``             nodes in the file (graphs, subgraphs,    200,000
                          functions)                               (``ONNXFORGE_MAX_NODES``)
``max_inlined_nodes``     nodes once every function call is        200,000
                          inlined                                  (``ONNXFORGE_MAX_INLINED_NODES``)
``max_depth``             subgraphs nested in subgraphs            8 (``ONNXFORGE_MAX_DEPTH``)
``max_materialized_mb``   bytes of the tensors declared by         1024 MiB
                          sparse initialisers, ConstantOfShape,    (``ONNXFORGE_MAX_MATERIALIZED_MB``)
                          Expand, Tile and Range whose sizes
                          constants fix (followed through
                          Identity, Reshape, Cast, Concat, Shape,
                          arithmetic: :mod:`.sizes`), all together
========================  =======================================  ==========================

A function that calls itself, directly or through others, is always refused. Pass
``LoadLimits(...)`` to :func:`~onnxforge.runtime.modelio.files.load_model`, or set the
environment variables, to allow more.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, fields

from onnx import AttributeProto, GraphProto, ModelProto

from onnxforge.runtime.errors import ConfigError, ModelError
from onnxforge.runtime.modelio.dtypes import storage_bytes
from onnxforge.runtime.modelio.sizes import MAKERS, Known

__all__ = ["LoadLimits", "check_limits"]

_ENV = {"max_nodes": "ONNXFORGE_MAX_NODES", "max_inlined_nodes": "ONNXFORGE_MAX_INLINED_NODES",
        "max_depth": "ONNXFORGE_MAX_DEPTH", "max_materialized_mb": "ONNXFORGE_MAX_MATERIALIZED_MB"}


@dataclass(frozen=True)
class LoadLimits:
    """The loader's limits (see the module docstring); :meth:`from_env` reads the environment."""

    max_nodes: int = 200_000
    max_inlined_nodes: int = 200_000
    max_depth: int = 8
    max_materialized_mb: int = 1024

    def __post_init__(self):
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError(f"load limit {f.name} must be a whole number >= 0; got {value!r}")

    @classmethod
    def from_env(cls) -> LoadLimits:
        values = {}
        for name, var in _ENV.items():
            text = os.environ.get(var)
            if text is None or text == "":
                continue
            if not text.isdigit():
                raise ConfigError(f"environment variable {var} must be a whole number >= 0; got {text!r}")
            values[name] = int(text)
        return cls(**values)


def _subgraphs(attr: AttributeProto) -> list[GraphProto]:
    return ([attr.g] if attr.HasField("g") else []) + list(attr.graphs)


def _key(node) -> tuple[str, str]:
    return (node.domain or "", node.op_type)


class _Walk:
    """One pass over a model's graphs and functions: node count, depth, calls, declared bytes."""

    def __init__(self, model: ModelProto, what: str, limits: LoadLimits):
        self.what, self.limits = what, limits
        self.functions = {(f.domain or "", f.name): f for f in model.functions}
        self.nodes = 0
        self.materialized = 0

    def fail(self, message: str) -> ModelError:
        return ModelError(f"{self.what}: {message}")

    def graph(self, graph: GraphProto, depth: int, where: str, outer: Known | None = None) -> None:
        if depth > self.limits.max_depth:
            raise self.fail(f"subgraphs nest {depth} deep, over the limit max_depth={self.limits.max_depth} "
                            f"(set LoadLimits or {_ENV['max_depth']} to allow more); at {where}")
        known = Known(outer)
        for t in graph.initializer:
            known.constant(t.name, t)
        for s in graph.sparse_initializer:
            self.declare(_tensor_bytes(s.values.data_type, s.dims), f"sparse initializer '{s.values.name}'")
        self.body(graph.node, known, depth, where)

    def body(self, nodes, known: Known, depth: int, where: str) -> None:
        self.nodes += len(nodes)
        if self.nodes > self.limits.max_nodes:
            raise self.fail(f"it has more than {self.limits.max_nodes} nodes, the limit max_nodes "
                            f"(set LoadLimits or {_ENV['max_nodes']} to allow more)")
        for node in nodes:
            self.materializes(node, known)
            label = f"node '{node.name or node.op_type}'"
            self.attributes(node.attribute, depth, f"{where} > {label}", known)

    def attributes(self, attrs, depth: int, where: str, known: Known | None = None) -> None:
        """Sparse tensors in attributes (densified) and subgraphs (one level deeper)."""
        for attr in attrs:
            for s in ([attr.sparse_tensor] if attr.HasField("sparse_tensor") else []) + list(attr.sparse_tensors):
                self.declare(_tensor_bytes(s.values.data_type, s.dims), f"sparse attribute '{attr.name}' of {where}")
            for g in _subgraphs(attr):
                self.graph(g, depth + 1, where, known)

    def materializes(self, node, known: Known) -> None:
        size = known.node(node)
        if size is not None and node.op_type in MAKERS:
            self.declare(size, f"{node.op_type} node '{node.name or node.output[0]}'")

    def declare(self, size: int, where: str) -> None:
        self.materialized += size
        cap = self.limits.max_materialized_mb * 2**20
        if self.materialized > cap:
            raise self.fail(f"{where} makes the tensors it declares add up to more than {self.limits.max_materialized_mb} "
                            f"MiB, the limit max_materialized_mb (set LoadLimits or {_ENV['max_materialized_mb']} "
                            "to allow more)")

    def calls(self) -> dict[tuple[str, str], list[tuple[str, str]]]:
        """Which local functions each local function calls (in its body and its subgraphs)."""
        out = {}
        for key, f in self.functions.items():
            out[key] = [_key(n) for n in _all_nodes(f.node) if _key(n) in self.functions]
        return out

    def call_order(self) -> list[tuple[str, str]]:
        """Local functions, each after every function it calls; a call cycle is refused.
        Iterative (a chain of thousands of functions must not exhaust Python's stack)."""
        calls = self.calls()
        state: dict = {}  # key -> 1 while on the path, 2 when done
        order = []
        for root in calls:
            if root in state:
                continue
            state[root] = 1
            path, stack = [root], [iter(calls[root])]
            while stack:
                callee = next(stack[-1], None)
                if callee is None:
                    done = path.pop()
                    stack.pop()
                    state[done] = 2
                    order.append(done)
                elif state.get(callee) == 1:
                    cycle = path[path.index(callee):] + [callee]
                    raise self.fail("function " + " -> ".join(f"'{d}.{n}'" if d else f"'{n}'" for d, n in cycle)
                                    + " calls itself; a recursive function cannot be run")
                elif callee not in state:
                    state[callee] = 1
                    path.append(callee)
                    stack.append(iter(calls[callee]))
        return order

    def inlined_size(self, main: GraphProto) -> int:
        """Nodes once every local function call is replaced by its body."""
        sizes: dict = {}

        def size_of(nodes) -> int:  # recursion only into subgraphs, whose depth is bounded
            total = 0
            for n in nodes:
                total += sizes.get(_key(n), 1)
                for attr in n.attribute:
                    for g in _subgraphs(attr):
                        total += size_of(g.node)
            return total

        for key in self.call_order():
            sizes[key] = size_of(self.functions[key].node)
        return size_of(main.node)


def _all_nodes(nodes):
    for n in nodes:
        yield n
        for attr in n.attribute:
            for g in _subgraphs(attr):
                yield from _all_nodes(g.node)


def _tensor_bytes(data_type: int, dims) -> int:
    try:
        return storage_bytes(data_type, [max(int(d), 0) for d in dims])
    except ModelError:  # an unknown type: count a byte an element (the loader's other checks report it)
        return math.prod(max(int(d), 0) for d in dims)


def check_limits(model: ModelProto, what: str, limits: LoadLimits | None = None) -> None:
    """Raise :class:`ModelError` when ``model`` exceeds ``limits`` (default: :meth:`LoadLimits.from_env`)."""
    limits = limits or LoadLimits.from_env()
    walk = _Walk(model, what, limits)
    walk.graph(model.graph, 0, "the main graph")
    for key, f in walk.functions.items():
        where = f"function '{key[0]}.{key[1]}'"
        walk.attributes(f.attribute_proto, 0, f"{where} (default attributes)")
        walk.body(f.node, Known(), 0, where)
    inlined = walk.inlined_size(model.graph)
    if inlined > limits.max_inlined_nodes:
        raise walk.fail(f"its functions inline to {inlined} nodes, over the limit max_inlined_nodes="
                        f"{limits.max_inlined_nodes} (set LoadLimits or {_ENV['max_inlined_nodes']} to allow more)")
