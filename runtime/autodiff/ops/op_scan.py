"""Scan (body, num_scan_inputs, scan_input_axes/directions, scan_output_axes/directions).

As Loop (op_loop.py): the forward Scan tapes the state variables each iteration receives (extra
scan outputs, axis 0, forward order); the gradient is a Loop over the T iterations in reverse.
Iteration k recomputes forward iteration t = T-1-k from its taped states and its scan-input
slices (position t, or T-1-t for a reversed input, along the input's axis), seeds the body's
vector-Jacobian product with the carried state cotangents and the slices of the scan outputs'
cotangents at their own positions, and emits each scan input's slice gradient as a scan output of
the reverse Loop; those stacks are put back in the input's order (reversed along the stacking
axis for a forward input) and their axis moved to the input's scan axis. The gradients of the
outer values the body reads are summed in carried accumulators."""
import numpy as np
from onnx import TensorProto, helper

from onnxforge.runtime.autodiff.ops import _body
from onnxforge.runtime.autodiff.ops._common import attr

OP_TYPE = "Scan"
SUBGRAPHS = True
GRAD_OUTPUTS = "all"


def check(node, info):
    seqs = getattr(info, "sequences", set())
    for name in list(node.input) + list(node.output) + _body.outer_reads(node):
        if name in seqs:
            return f"{name!r} is a sequence; Scan over sequences is not covered"
    m = attr(node, "num_scan_inputs")
    for i in node.input[len(node.input) - m:]:
        if info.get(i, (None, None))[1] is None:
            return f"needs the rank of the scan input {i!r}, which shape inference could not find"
    return _body.problems(node, info)


def _float(ctx, name):
    return ctx.elem(name) in (TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.FLOAT16, TensorProto.BFLOAT16)


def _ints(node, name, n):
    v = attr(node, name)
    return [0] * n if v is None else list(v) + [0] * (n - len(v))


def vjp(ctx, node, dys, need):
    body = attr(node, "body")
    original = body.__class__()
    original.CopyFrom(body)
    m = attr(node, "num_scan_inputs")
    n_in = len(node.input)
    n_state = n_in - m
    n_scan_out = len(body.output) - n_state
    in_axes, in_dirs = _ints(node, "scan_input_axes", m), _ints(node, "scan_input_directions", m)
    out_axes, out_dirs = _ints(node, "scan_output_axes", n_scan_out), _ints(node, "scan_output_directions", n_scan_out)
    b_in = [i.name for i in body.input]
    b_out = [o.name for o in body.output]
    xs = list(node.input[n_state:])
    ranks = [ctx.need_rank(x) for x in xs]
    in_axes = [a + r if a < 0 else a for a, r in zip(in_axes, ranks)]
    outer = _body.outer_reads(node)
    wanted = [o for o, n in zip(outer, need[n_in:]) if n]
    floats = [j for j in range(n_state) if _float(ctx, node.input[j])]
    grad_xs = [i for i in range(m) if need[n_state + i]]

    taped = _body.tape(ctx, node, body, b_in[:n_state])
    states = [_body.untape(ctx, taped[j], ctx.shape(node.input[j])) for j in range(n_state)]
    trips = ctx.op("Squeeze", [ctx.shape(xs[0], in_axes[0], in_axes[0] + 1), ctx.ints([0])])
    one = ctx.const(np.array(1, np.int64))
    last = ctx.op("Sub", [trips, one])
    true = ctx.const(np.array(True))
    k, cond = ctx.fresh("k"), ctx.fresh("cond")
    dv = {j: ctx.fresh("dv") for j in floats}
    acc = {o: ctx.fresh("acc") for o in wanted}
    reads = _body._graph_reads(original)

    def reverse():
        t = ctx.op("Sub", [last, k])
        back = ctx.op("Sub", [last, t])  # the position of iteration t in a reversed sequence (= k)

        def at(direction):
            return back if direction else t
        for j in range(n_state):
            ctx.nodes.append(helper.make_node("Gather", [states[j], t], [b_in[j]], axis=0, name=ctx.fresh("node_st")))
        for i in range(m):
            ctx.nodes.append(helper.make_node("Gather", [xs[i], at(in_dirs[i])], [b_in[n_state + i]], axis=in_axes[i],
                                              name=ctx.fresh("node_slice")))
        seeds = [(b_out[j], dv[j]) for j in floats]
        for s in range(n_scan_out):
            dy = dys[n_state + s] if n_state + s < len(dys) else None
            if dy is not None:
                seeds.append((b_out[n_state + s], ctx.op("Gather", [dy, at(out_dirs[s])], axis=out_axes[s])))
        types = {b_in[j]: (ctx.elem(node.input[j]), ctx.dims(node.input[j])) for j in range(n_state)}
        for i in range(m):
            d = ctx.dims(xs[i])
            types[b_in[n_state + i]] = (ctx.elem(xs[i]), None if d is None else d[:in_axes[i]] + d[in_axes[i] + 1:])
            ctx.info[b_in[n_state + i]] = types[b_in[n_state + i]]
        wrt = [b_in[j] for j in floats] + [b_in[n_state + i] for i in grad_xs] + [o for o in wanted if o in reads]
        nodes, inits, grads = _body.body_vjp(ctx, original, seeds, wrt, types)
        ctx.nodes.extend(nodes)
        new_dv = [grads.get(b_in[j]) or ctx.zeros_like(node.input[j]) for j in floats]
        new_acc = [ctx.op("Add", [acc[o], grads[o]]) if o in grads else ctx.op("Identity", [acc[o]]) for o in wanted]
        slices = [ctx.op("Unsqueeze", [grads.get(b_in[n_state + i]) or ctx.zeros_like(b_in[n_state + i]),
                                       ctx.ints([0])]) for i in grad_xs]
        return [ctx.op("Identity", [true])] + new_dv + new_acc + slices, inits

    (outs, inits), nodes = _body.emit_into(ctx, reverse)
    inputs = ([_body.value_info(k, TensorProto.INT64, []), _body.value_info(cond, TensorProto.BOOL, [])]
              + [_body.value_info(dv[j], ctx.elem(node.input[j]), ctx.dims(node.input[j])) for j in floats]
              + [_body.value_info(acc[o], ctx.elem(o), ctx.dims(o)) for o in wanted])
    like = [node.input[j] for j in floats] + wanted
    outputs = ([_body.value_info(outs[0], TensorProto.BOOL, [])]
               + [_body.value_info(n, ctx.elem(v), ctx.dims(v)) for n, v in zip(outs[1:], like)]
               + [_body.value_info(n, ctx.elem(xs[i]), [None] * ranks[i]) for n, i in zip(outs[1 + len(like):], grad_xs)])
    rbody = _body.graph(ctx, "reverse_body", nodes, inputs, outputs, inits)
    init_dv = [dys[j] if j < len(dys) and dys[j] is not None else ctx.zeros_like(node.input[j]) for j in floats]
    n_res = len(like) + len(grad_xs)
    res = ctx.op("Loop", [trips, true] + init_dv + [ctx.zeros_like(o) for o in wanted], n_res, body=rbody)
    res = [res] if n_res == 1 else res
    grads = [None] * (n_in + len(outer))
    for j, r in zip(floats, res):
        if need[j]:
            grads[j] = ctx.like(r, node.input[j])
    for o, r in zip(wanted, res[len(floats):]):
        grads[n_in + outer.index(o)] = ctx.like(r, o)
    for i, r in zip(grad_xs, res[len(like):]):
        grads[n_state + i] = ctx.like(_unstack(ctx, r, xs[i], in_axes[i], ranks[i], in_dirs[i]), xs[i])
    return grads


def _unstack(ctx, stacked, x, axis, rank, direction):
    """The reverse Loop's stack of slice gradients ([T, 1, ...] or [T, ...], in reverse iteration
    order) as the gradient of scan input ``x``: iteration order, then the scan axis moved back."""
    rest = ctx.op("Concat", [ctx.shape(x, 0, axis), ctx.shape(x, axis + 1)], axis=0) if axis else ctx.shape(x, 1)
    s = _body.untape(ctx, stacked, rest)
    if not direction:  # reverse iteration order = reversed positions for a forward input
        s = ctx.op("Slice", [s, ctx.ints([-1]), ctx.ints([-(2 ** 63)]), ctx.ints([0]), ctx.ints([-1])])
    if axis:
        s = ctx.op("Transpose", [s], perm=list(range(1, axis + 1)) + [0] + list(range(axis + 1, rank)))
    return s
