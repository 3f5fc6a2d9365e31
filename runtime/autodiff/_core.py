"""Reverse-mode differentiation of an ONNX graph into standard ONNX ops."""

from __future__ import annotations


import onnx
from onnx import TensorProto, helper, numpy_helper

from onnxforge.runtime.autodiff import _expand, _tidy
from onnxforge.runtime.autodiff._emitter import Emitter
from onnxforge.runtime.autodiff._errors import AutodiffError, UnsupportedOpError
from onnxforge.runtime.autodiff._values import (MAX_IR_VERSION, MIN_OPSET, _infer,
                                               _is_float, _kind, _may_carry, _node_inputs, _subgraph_inputs,
                                               prepare)
from onnxforge.runtime.autodiff.ops import NON_DIFFERENTIABLE, RULES, ZERO, _sequence

__all__ = ["build_gradients", "describe_missing", "grad_outputs", "gradient_model", "missing_rules", "prepare",
           "MIN_OPSET", "MAX_IR_VERSION"]

def _constants(graph: onnx.GraphProto, wrt: set, opset: int) -> dict:
    """Values known at build time: Constant nodes, integer initialisers (shape-like data) and
    initialisers read only as settings. Other float and bool initialisers are parameters or
    switches a trainer may change: never folded."""
    inputs = {i.name for i in graph.input}
    consts = {}
    settings = _settings_only(graph)
    for init in graph.initializer:
        if init.name in wrt or init.name in inputs:
            continue
        if init.data_type in (TensorProto.INT64, TensorProto.INT32) or init.name in settings:
            consts[init.name] = numpy_helper.to_array(init)
    for node in graph.node:
        if node.op_type == "Constant" and node.domain in ("", "ai.onnx") and len(node.output) == 1:
            try:
                from onnx.reference import ReferenceEvaluator

                consts[node.output[0]] = list(ReferenceEvaluator(
                    helper.make_graph([node], "c", [], [helper.make_value_info(node.output[0], onnx.TypeProto())]),
                    opsets={"": opset}).run(None, {}))[0]
            except Exception:  # noqa: BLE001
                pass
    return consts


def _settings_only(graph) -> set:
    """Names read only at inputs a rule declares settings (SETTINGS_INPUTS: Resize's roi and
    scales): their initialisers are build-time constants, whatever their element type."""
    uses: dict[str, bool] = {}
    for node in graph.node:
        rule = _rule(node)
        blocked = getattr(rule, "SETTINGS_INPUTS", ()) if rule is not None else ()
        for idx, name in enumerate(node.input):
            if name:
                uses[name] = uses.get(name, True) and idx in blocked
        for name in _subgraph_inputs(node):
            uses[name] = False
    return {n for n, only in uses.items() if only}


def grad_outputs(rule, node) -> tuple:
    """The output indices whose cotangents ``rule`` uses for ``node`` (its ``GRAD_OUTPUTS``:
    indices, "all", or a function of the node; default: the first output only)."""
    declared = getattr(rule, "GRAD_OUTPUTS", (0,))
    if callable(declared):
        declared = declared(node)
    if declared == "all":
        return tuple(range(len(node.output)))
    return tuple(declared)


def _rule(node):
    if node.domain not in ("", "ai.onnx"):
        return None
    return RULES.get(node.op_type)


def _activity(graph, info, wrt, of):
    """Names that depend on ``wrt`` through values that can carry a derivative, and that ``of``
    depends on. A value is cut from the path only where its derivative is provably zero: outputs
    of ops declared non-differentiable (next to the registry) and tensors known to be integer,
    boolean or string. Sequences, optionals and values of unknown type stay on the path, so that
    an op no rule covers is refused instead of being skipped (GPT-2's all-zero gradients came from
    SplitToSequence's sequence output being treated as a constant)."""
    fwd = set(w for w in wrt if _is_float(info, w))
    for node in graph.node:
        if node.domain in ("", "ai.onnx") and node.op_type in NON_DIFFERENTIABLE:
            continue
        if any(i in fwd for i in _node_inputs(node)):
            fwd.update(o for o in node.output if o and _may_carry(info, o))
    bwd = {of}
    for node in reversed(graph.node):
        if any(o in bwd for o in node.output if o):
            bwd.update(_node_inputs(node))
    return fwd & bwd


def _uncovered(node, info) -> bool:
    """A default-domain node no rule covers (no rule, or a form its rule's ``check`` refuses)."""
    if node.domain not in ("", "ai.onnx") or node.op_type in NON_DIFFERENTIABLE:
        return False
    rule = _rule(node)
    if rule is None:
        return True
    check = getattr(rule, "check", None)
    return bool(check is not None and check(node, info))


def _expand_uncovered(model, wrt=None, of=None):
    """Function ops no rule covers, on the path from ``wrt`` to ``of`` (everywhere when None),
    replaced by the function bodies ONNX defines for them (see _expand)."""
    def wants(m, info):
        active = _activity(m.graph, info, set(wrt), of) if wrt is not None else None
        return {k for k, n in enumerate(m.graph.node)
                if (active is None or any(o in active for o in n.output if o)) and _uncovered(n, info)}
    return _expand.expand_functions(model, wants, _infer)


def _active_nodes(graph, active):
    return [n for n in graph.node if any(o in active for o in n.output if o)]


def _check_rules(graph, info, active, of) -> list:
    """(op_type, node_name, output_name, why) for every active node the rules cannot handle."""
    problems = []
    for node in _active_nodes(graph, active):
        out = next(o for o in node.output if o in active)
        rule = _rule(node)
        if rule is None:
            domain = f" of domain {node.domain!r}" if node.domain not in ("", "ai.onnx") else ""
            problems.append((node.op_type, node.name, out, f"no gradient rule for this op{domain}"))
            continue
        used = grad_outputs(rule, node)
        for idx, o in enumerate(node.output):
            if o and o in active and idx not in used:
                problems.append((node.op_type, node.name, o, f"output {idx} ({o!r}) lies on the path to the loss but "
                                 "the rule does not differentiate it"))
        blocked = getattr(rule, "NON_DIFFERENTIABLE_INPUTS", ())
        for idx, inp in enumerate(node.input):
            if inp and inp in active and idx in blocked:
                problems.append((node.op_type, node.name, out,
                                 f"input {idx} ({inp!r}) needs a gradient but the op is not differentiable in it"))
        if not getattr(rule, "NON_TENSOR", False):  # sequences of tensors are the sequence rules' (ops/_sequence)
            for v in [i for i in node.input if i in active] + [o for o in node.output if o in active]:
                if not _is_float(info, v) and info.get(v, (None, None))[0] is not None:
                    problems.append((node.op_type, node.name, out,
                                     f"{v!r} is {_kind(info, v)} on the path to the loss; the rule handles float "
                                     "tensors only"))
        sub = _subgraph_inputs(node) & active
        if sub and not getattr(rule, "SUBGRAPHS", False):
            problems.append((node.op_type, node.name, out, f"its subgraphs read {sorted(sub)} which need gradients"))
        check = getattr(rule, "check", None)
        if check is not None:
            why = check(node, info)
            if why:
                problems.append((node.op_type, node.name, out, why))
    return problems


def _refusal(problems, of) -> UnsupportedOpError:
    lines = [f"op {op!r} (node {name!r}, output {out!r} on the path to {of!r}): {why}"
             for op, name, out, why in problems]
    more = f" (and {len(lines) - 8} more)" if len(lines) > 8 else ""
    return UnsupportedOpError("cannot differentiate the model: " + "; ".join(lines[:8]) + more,
                              [(op, name, out) for op, name, out, _ in problems])


def missing_rules(model, wrt=None, of=None, *, reasons: bool = False) -> list[tuple]:
    """``(op_type, node_name)`` of the nodes that have no gradient rule. With ``wrt`` and ``of``,
    only the nodes on a path from ``wrt`` to ``of`` (those that would stop :func:`build_gradients`,
    forms a rule does not cover included); without, every node that is neither covered nor known
    to carry no gradient. ``reasons``: ``(op_type, node_name, why)`` triples instead, ``why`` one
    phrase ("no gradient rule for this op", "clip is not covered"; the first one of a node)."""
    model = prepare(model)
    model = _expand_uncovered(model, None if wrt is None or of is None else list(wrt), of)
    graph = model.graph
    if wrt is None or of is None:
        found = [(n.op_type, n.name, "no gradient rule for this op") for n in graph.node
                 if _rule(n) is None and not (n.domain in ("", "ai.onnx") and n.op_type in NON_DIFFERENTIABLE)]
    else:
        info = _infer(model)
        active = _activity(graph, info, set(wrt), of)
        found = [(op, name, why) for op, name, _, why in _check_rules(graph, info, active, of)]
        if not found:  # what only building finds (a rank unknown, a form a rule meets while emitting)
            try:
                build_gradients(model, wrt, of)
            except UnsupportedOpError as exc:
                found = [(op, name, _reason(exc)) for op, name, _ in exc.missing] or [("?", "", _reason(exc))]
    seen, out = set(), []
    for op, name, why in found:
        if (op, name) not in seen:
            seen.add((op, name))
            out.append((op, name, why) if reasons else (op, name))
    return out


def _reason(exc) -> str:
    text = str(exc)
    return text.split(": ", 1)[1] if text.startswith("cannot differentiate ") and ": " in text else text


def describe_missing(found) -> str:
    """``missing_rules(..., reasons=True)`` as one phrase: ``LSTM (lstm1): clip is not covered; Elu (e): ...``."""
    return "; ".join(f"{op} ({name}): {why}" if name else f"{op}: {why}" for op, name, why in found)


def _all_names(graph) -> set:
    names = {i.name for i in graph.input} | {i.name for i in graph.initializer} | {o.name for o in graph.output}
    for n in graph.node:
        names.update(n.output)
        names.update(n.input)
        names.add(n.name)
    return names


def build_gradients(model, wrt, of: str, seed: str | None = None, *, grad_names: dict | None = None,
                    prefix: str = "grad") -> tuple[onnx.ModelProto, dict]:
    """Append to (a copy of) ``model`` the nodes computing the vector-Jacobian product of ``of``.

    ``wrt``: graph input or initialiser names. ``seed``: the name of the cotangent of ``of`` (a
    value of the graph, or a new graph input of ``of``'s type and shape, added here); ``None``
    means ones (the gradient of the sum of ``of``'s elements). ``grad_names`` maps a ``wrt`` name
    to the name its gradient gets (default ``NAME_grad``). Returns ``(model, {wrt: grad_name})``:
    the gradients are values of the graph, not yet graph outputs.
    """
    model = prepare(model)
    graph = model.graph
    wrt = list(dict.fromkeys(wrt))
    known = {i.name for i in graph.input} | {i.name for i in graph.initializer}
    values = set(known)
    for n in graph.node:
        values.update(o for o in n.output if o)
    for w in wrt:
        if w not in known:
            raise AutodiffError(f"{w!r} is neither a graph input nor an initialiser of the model")
    if of not in values:
        raise AutodiffError(f"{of!r} is not a value of the model (no input, initialiser or node output)")
    info = _infer(model)
    if any(_uncovered(n, info) for n in graph.node):
        model = _expand_uncovered(model, wrt, of)
        graph = model.graph
        info = _infer(model)
    for w in wrt:
        if not _is_float(info, w) or w in info.sequences:
            raise AutodiffError(f"{w!r} is not a floating-point tensor: it carries no gradient")
    if not _is_float(info, of) or of in info.sequences:
        raise AutodiffError(f"{of!r} is not a floating-point tensor: it has no gradient")
    names = dict(grad_names or {})
    for w in wrt:
        names.setdefault(w, f"{w}_grad")
    taken = _all_names(graph)
    for w, n in names.items():
        if n in taken:
            raise AutodiffError(f"the gradient of {w!r} would be called {n!r}, a name the model already uses")

    active = _activity(graph, info, set(wrt), of)
    problems = _check_rules(graph, info, active, of)
    if problems:
        raise _refusal(problems, of)

    opset = max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    ctx = Emitter(info, opset, _constants(graph, set(wrt), opset), prefix, taken | set(names.values()))
    ctx.nan_checked = _masked_values(graph)
    ctx.producers = {o: n for n in graph.node for o in n.output if o}
    # the cotangent of `of`
    if seed is None:
        seed_name = ctx.fill_like(of, 1.0)
    else:
        seed_name = seed
        if seed not in values:
            elem, dims = info.get(of, (None, None))
            graph.input.append(helper.make_tensor_value_info(seed, elem, dims))
            info[seed] = (elem, dims)
    contributions: dict[str, list[str]] = {of: [seed_name]}

    def total(name):
        terms = contributions.get(name)
        if not terms:
            return None
        if ctx.is_sequence(name):  # sequence cotangents: see ops/_sequence.py
            contributions[name] = [_sequence.total(ctx, name, terms)]
            return contributions[name][0]
        if len(terms) > 1:
            contributions[name] = [ctx.sum(terms)]
        g = contributions[name][0]
        if g not in ctx.info or ctx.info[g][1] is None:
            ctx.like(g, name)
        return g

    for node in _active_nodes(graph, active)[::-1]:
        dys = [total(o) if o else None for o in node.output]
        if all(d is None for d in dys):
            continue
        rule = _rule(node)
        # rules of ops with subgraphs (SUBGRAPHS) also return the gradients of the outer values
        # their subgraphs read, in the order of sorted(_subgraph_inputs(node)), after the inputs'
        reads = list(node.input) + (sorted(_subgraph_inputs(node)) if getattr(rule, "SUBGRAPHS", False) else [])
        need = [bool(i) and i in active for i in reads]
        if not any(need):
            continue
        ctx.node = node
        grads = list(rule.vjp(ctx, node, dys, need))
        ctx.node = None
        for idx, (inp, g, n) in enumerate(zip(reads, grads + [None] * len(reads), need)):
            if not n or g is ZERO:
                continue
            if g is None:  # a rule that forgets an input would give a silent zero: never
                raise AutodiffError(f"internal: the rule of op {node.op_type!r} (node {node.name!r}) gave no "
                                    f"gradient for {inp!r} (read {idx}), which is on the path to {of!r}")
            contributions.setdefault(inp, []).append(g)

    result = {}
    produced = {o: n for n in ctx.nodes for o in n.output}
    renamed = set()
    moved: dict[str, str] = {}
    for w in wrt:
        g = total(w)
        target = names[w]
        if g is None:
            g = ctx.zeros_like(w)
            produced = {o: n for n in ctx.nodes for o in n.output}
        g = moved.get(g, g)  # a gradient two names share (Add's, Mean's) was renamed for the first
        if g in produced and g not in renamed and g not in ctx.consts and g not in wrt:
            _rename(ctx.nodes, g, target)
            renamed.add(target)
            moved[g] = target
            produced[target] = produced.pop(g)
        else:
            ctx.nodes.append(helper.make_node("Identity", [g], [target], name=f"{prefix}/node_{target}"))
        ctx.info[target] = info.get(w, (None, None))
        result[w] = target

    keep = set(result.values())
    nodes, inits = _tidy.tidy(ctx.nodes, ctx.initializers, ctx.consts, keep, opset)
    graph.node.extend(nodes)
    graph.initializer.extend(inits)
    _stamp(model)
    return model, result


def _masked_values(graph) -> set:
    """Values the model tests for NaN (IsNaN) or replaces in part (a Where branch), directly or
    through Cast/Identity: Attention's body masks whole softmax rows this way."""
    found = {n.input[0] for n in graph.node if n.op_type == "IsNaN" and n.input}
    found |= {i for n in graph.node if n.op_type == "Where" for i in n.input[1:] if i}
    producer = {o: n for n in graph.node for o in n.output}
    for v in list(found):
        while v in producer and producer[v].op_type in ("Cast", "Identity", "CastLike"):
            v = producer[v].input[0]
            found.add(v)
    return found


def _rename(nodes, old, new):
    for n in nodes:
        for i, o in enumerate(n.output):
            if o == old:
                n.output[i] = new
        for i, x in enumerate(n.input):
            if x == old:
                n.input[i] = new


def _stamp(model: onnx.ModelProto) -> None:
    """Set the default-domain opset to at least 17 and the IR version to what the opsets need,
    at most 10 (what ONNX Runtime 1.19 loads) unless the input model's was lower."""
    for o in model.opset_import:
        if o.domain in ("", "ai.onnx") and o.version < MIN_OPSET:
            o.version = MIN_OPSET
    try:
        needed = helper.find_min_ir_version_for(list(model.opset_import), ignore_unknown=True)
    except TypeError:
        needed = helper.find_min_ir_version_for(list(model.opset_import))
    model.ir_version = max(needed, min(model.ir_version or MAX_IR_VERSION, MAX_IR_VERSION))


def gradient_model(model, wrt, of: str, *, seed: str | None = None) -> onnx.ModelProto:
    """A model with ``model``'s inputs, its outputs, and one more output per name in ``wrt``,
    ``NAME_grad``: the gradient of the sum of all elements of output ``of`` (or, with ``seed``,
    the vector-Jacobian product with the graph input called ``seed``, added when new)."""
    if isinstance(wrt, str):
        wrt = [wrt]
    out, names = build_gradients(model, wrt, of, seed)
    info = _infer_outputs(out, names)
    for w, g in names.items():
        elem, dims = info[w]
        out.graph.output.append(helper.make_tensor_value_info(g, elem, dims))
    return out


def _infer_outputs(model, names):
    info = {}
    g = model.graph
    for vi in list(g.input):
        t = vi.type.tensor_type
        info[vi.name] = (t.elem_type, [d.dim_value if d.HasField("dim_value") else (d.dim_param or None)
                                       for d in t.shape.dim] if t.HasField("shape") else None)
    for init in g.initializer:
        if init.name in names:
            info[init.name] = (init.data_type, list(init.dims))
    return info
