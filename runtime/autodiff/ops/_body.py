"""The vector-Jacobian product of a subgraph (an If branch, a Loop or Scan body), for the
control-flow rules.

The body is lifted into a model of its own: its inputs, the outer values it reads (graph inputs;
build-time constants become initialisers) and one cotangent input per output that gets one. The
loss ``L = sum_o ReduceSum(o * seed_o)`` has gradient ``seed_o`` at each output ``o``, so the
gradients of ``L`` (by :func:`build_gradients`, recursively: nested control flow works the same
way) are the vector-Jacobian products of the body. The resulting nodes (the body's forward,
recomputed, then its backward) become the nodes of a gradient subgraph; the lifted inputs are
dropped again, so the names resolve to the enclosing graph, which defines them."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from onnxforge.runtime.autodiff._errors import UnsupportedOpError
from onnxforge.runtime.autodiff._values import _subgraph_inputs

__all__ = ["body_vjp", "emit_into", "graph", "outer_reads", "tape", "untape", "value_info"]


def outer_reads(node) -> list[str]:
    """The outer values the subgraphs of ``node`` read, in the order the core passes their
    gradients (sorted)."""
    return sorted(_subgraph_inputs(node))


def _graph_reads(graph) -> set:
    node = helper.make_node("If", ["c"], [], then_branch=graph, else_branch=graph)
    return _subgraph_inputs(node)


def value_info(name, elem, dims):
    """A tensor value info; rank-only dims (None entries) stay unnamed."""
    return helper.make_tensor_value_info(name, elem or TensorProto.FLOAT, None if dims is None else
                                         [d if isinstance(d, int) else None for d in dims])


def emit_into(ctx, build):
    """Run ``build()`` writing into a fresh node list (a subgraph's); returns ``(result, nodes)``.
    Values computed there are not visible outside: the emitter's shape cache is restored."""
    saved, cache = ctx.nodes, dict(ctx._shape_cache)
    ctx.nodes = []
    try:
        result = build()
        return result, ctx.nodes
    finally:
        ctx.nodes, ctx._shape_cache = saved, cache


def graph(ctx, base, nodes, inputs, outputs, initializers=()):
    return helper.make_graph(nodes, ctx.fresh(base), inputs, outputs, list(initializers))


def _declared(vi):
    t = vi.type.tensor_type
    if not vi.type.HasField("tensor_type"):
        return None
    dims = None if not t.HasField("shape") else [
        d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim]
    return t.elem_type or None, dims


def body_vjp(ctx, graph: onnx.GraphProto, seeds: dict, wrt: list, input_types: dict | None = None):
    """Differentiate ``graph`` with cotangent ``seed`` (a name, defined where the gradient
    subgraph will run) at output ``out`` for each ``(out, seed)`` in ``seeds`` (a dict or pairs), with respect to ``wrt`` (names of the
    graph's inputs or of outer values it reads). ``input_types`` gives ``(elem, dims)`` of graph
    inputs whose declared type lacks them. Returns ``(nodes, initializers, {wrt: gradient})``;
    the nodes read the graph's input names and the seeds, which the caller defines."""
    from onnxforge.runtime.autodiff._core import build_gradients

    input_types = input_types or {}
    own = {i.name for i in graph.input}
    reads = sorted(_graph_reads(graph))
    inputs, inits = [], []
    for vi in graph.input:
        t = _declared(vi)
        elem, dims = t if t is not None and t[0] is not None else input_types.get(vi.name, (None, None))
        inputs.append(value_info(vi.name, elem, dims))
    lifted_consts = set()
    for name in reads:
        if name in ctx.consts:
            inits.append(numpy_helper.from_array(np.asarray(ctx.consts[name]), name))
            lifted_consts.add(name)
        else:
            inputs.append(value_info(name, ctx.elem(name), ctx.dims(name)))
    out_types = {o.name: _declared(o) for o in graph.output}
    nodes = list(graph.node)
    terms = []
    loss = ctx.fresh("body_loss")
    for out, seed in (seeds.items() if isinstance(seeds, dict) else seeds):
        elem, dims = out_types.get(out) or (ctx.elem(out), ctx.dims(out))
        if out in own or out in reads:
            elem, dims = ctx.elem(out) or elem, ctx.dims(out) or dims
        if seed not in own and seed not in reads:
            inputs.append(value_info(seed, elem or ctx.elem(seed), dims))
        prod, total = ctx.fresh("body_prod"), ctx.fresh("body_sum")
        nodes.append(helper.make_node("Mul", [out, seed], [prod], name=ctx.fresh("node_body_prod")))
        nodes.append(helper.make_node("ReduceSum", [prod], [total], keepdims=0, name=ctx.fresh("node_body_sum")))
        terms.append(total)
    if not terms:
        return [], [], {}
    nodes.append(helper.make_node("Sum", terms, [loss], name=ctx.fresh("node_body_loss")))
    pairs = list(seeds.items() if isinstance(seeds, dict) else seeds)
    elem = next((ctx.elem(s) for _, s in pairs if ctx.elem(s) is not None), TensorProto.FLOAT)
    lifted = helper.make_graph(nodes, "body", inputs, [helper.make_tensor_value_info(loss, elem, [])],
                               list(graph.initializer) + inits)
    model = helper.make_model(lifted, opset_imports=[helper.make_opsetid("", ctx.opset)])
    model.ir_version = 8
    names = {w: ctx.fresh("body_grad") for w in wrt}
    try:
        out, _ = build_gradients(model, wrt, loss, grad_names=names, prefix=ctx.fresh("body"))
    except UnsupportedOpError as exc:
        ctx.refuse(f"its subgraph {graph.name!r} cannot be differentiated: {exc}")
    keep = [t for t in out.graph.initializer if t.name not in lifted_consts]
    for name in names.values():
        ctx.info.setdefault(name, (elem, None))
    return _live(list(out.graph.node), set(names.values())), keep, names


def problems(node, info) -> str | None:
    """Why a subgraph of ``node`` cannot be differentiated (an op without a rule, a form a rule
    does not cover, on the path from its inputs and outer reads to its float outputs), found
    before anything is built, or None. The rules' own build-time refusals come when building."""
    from onnxforge.runtime.autodiff._core import _activity, _check_rules
    from onnxforge.runtime.autodiff._values import _infer

    for a in node.attribute:
        for g in ([a.g] if a.type == onnx.AttributeProto.GRAPH else list(a.graphs)):
            inputs = [vi for vi in g.input]
            reads = sorted(_graph_reads(g))
            for name in reads:
                elem, dims = info.get(name, (None, None))
                if elem is not None and not isinstance(elem, str):
                    inputs.append(value_info(name, elem, dims))
            outs = [o.name for o in g.output if (_declared(o) or (None,))[0] in _FLOATS]
            if not outs:
                continue
            loss = "__body_loss__"
            nodes = list(g.node) + [helper.make_node("Sum", outs, [loss])] if len(outs) > 1 else \
                list(g.node) + [helper.make_node("Identity", outs, [loss])]
            lifted = helper.make_graph(nodes, "check", inputs, [helper.make_value_info(loss, onnx.TypeProto())],
                                       list(g.initializer))
            model = helper.make_model(lifted, opset_imports=[helper.make_opsetid("", getattr(info, "opset", None) or 18)])
            inner = _infer(model)
            wrt = {vi.name for vi in inputs if inner.get(vi.name, (None, None))[0] in _FLOATS}
            found = _check_rules(lifted, inner, _activity(lifted, inner, wrt, loss) - {loss}, loss)
            if found:
                op, name, _, why = found[0]
                return f"its subgraph {g.name!r}: op {op!r} (node {name!r}): {why}"
    return None


_FLOATS = (TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.FLOAT16, TensorProto.BFLOAT16)


def _live(nodes, wanted: set):
    """The nodes the ``wanted`` names need (the loss's own nodes are dropped)."""

    needed, live = set(wanted), []
    for node in reversed(nodes):
        if any(o in needed for o in node.output):
            live.append(node)
            needed.update(i for i in node.input if i)
            needed.update(_subgraph_inputs(node))
    return live[::-1]


def tape(ctx, node, body, values):
    """Make the forward ``node`` (a Loop or Scan) output, as scan outputs of ``body``, each body
    input in ``values`` stacked over the iterations; returns the new output names, each
    stacked as [T, 1, ...] (ONNX Runtime) or [T, ...] (onnx.reference, which concatenates scan
    outputs instead of stacking them): callers reshape with :func:`untape`."""
    n_out = len(body.output) - (1 if node.op_type == "Loop" else 0)
    while len(node.output) < n_out:
        node.output.append("")
    for a in node.attribute:  # Scan: the tapes stack on axis 0, in iteration order
        if a.name in ("scan_output_axes", "scan_output_directions"):
            a.ints.extend([0] * len(values))
    outs = []
    for v in values:
        inner, outer = ctx.fresh("tape_in"), ctx.fresh("tape")
        body.node.append(helper.make_node("Unsqueeze", [v, ctx.ints([0])], [inner], name=ctx.fresh("node_tape")))
        elem = next((i.type.tensor_type.elem_type for i in body.input if i.name == v), TensorProto.FLOAT)
        body.output.append(helper.make_tensor_value_info(inner, elem, None))
        node.output.append(outer)
        outs.append(outer)
    return outs


def untape(ctx, taped, like_shape):
    """A tape as [T, *shape]: ``like_shape`` is the shape of one entry (an int64 1-D name)."""
    return ctx.op("Reshape", [taped, ctx.op("Concat", [ctx.ints([-1]), like_shape], axis=0)])
