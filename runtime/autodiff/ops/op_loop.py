"""Loop (body): reverse-mode through a taped forward.

The forward Loop is made to tape, as extra scan outputs, the iteration number and each
loop-carried value as the body receives it (so the tape holds exactly the iterations that ran,
however the condition, computed from floats or not, ended the loop; zero-trip loops give empty
tapes). The gradient is a Loop over the tape in reverse: iteration k recomputes forward iteration
t = T-1-k from its taped inputs and runs the body's vector-Jacobian product (ops/_body.py) with
the loop-carried cotangents and that iteration's scan-output cotangents as seeds; the carried
cotangents come out as the next ones, and the gradients of the outer values the body reads are
summed in carried accumulators. After the loop, the carried cotangents are the gradients of the
initial values. The trip count and condition carry no gradient. Loop-carried values must keep
their shape from one iteration to the next (the tape stacks them), and sequence-valued ones are
refused."""
import numpy as np
from onnx import TensorProto, helper

from onnxforge.runtime.autodiff.ops import _body
from onnxforge.runtime.autodiff.ops._common import attr

OP_TYPE = "Loop"
SUBGRAPHS = True
GRAD_OUTPUTS = "all"
NON_DIFFERENTIABLE_INPUTS = (0, 1)


def check(node, info):
    seqs = getattr(info, "sequences", set())
    for name in list(node.input[2:]) + list(node.output) + _body.outer_reads(node):
        if name in seqs:
            return f"{name!r} is a sequence; loop-carried or scanned sequences are not covered"
    return _body.problems(node, info)


def _float(ctx, name):
    return ctx.elem(name) in (TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.FLOAT16, TensorProto.BFLOAT16)


def vjp(ctx, node, dys, need):
    body = attr(node, "body")
    original = body.__class__()
    original.CopyFrom(body)
    n_in = len(node.input)
    n_carried = n_in - 2
    b_in = [i.name for i in body.input]
    b_out = [o.name for o in body.output]
    outer = _body.outer_reads(node)
    wanted = [o for o, n in zip(outer, need[n_in:]) if n]
    floats = [j for j in range(n_carried) if _float(ctx, node.input[2 + j])]
    scans = range(len(b_out) - 1 - n_carried)

    taped = _body.tape(ctx, node, body, [b_in[0]] + [b_in[2 + j] for j in range(n_carried)])
    iters = ctx.op("Reshape", [taped[0], ctx.ints([-1])])
    trips = ctx.op("Size", [iters])
    carried = [_body.untape(ctx, taped[1 + j], ctx.shape(node.input[2 + j])) for j in range(n_carried)]
    scan_dys = {k: dys[n_carried + k] for k in scans if n_carried + k < len(dys) and dys[n_carried + k] is not None}

    # the reverse body: k, cond, the carried cotangents, the outer gradients' running sums
    k, cond = ctx.fresh("k"), ctx.fresh("cond")
    dv = {j: ctx.fresh("dv") for j in floats}
    acc = {o: ctx.fresh("acc") for o in wanted}
    one = ctx.const(np.array(1, np.int64))
    true = ctx.const(np.array(True))
    seeds = [(b_out[1 + j], dv[j]) for j in floats]
    reads = _body._graph_reads(original)

    def reverse():
        t = ctx.op("Sub", [ctx.op("Sub", [trips, one]), k])
        ctx.nodes.append(helper.make_node("Gather", [iters, t], [b_in[0]], name=ctx.fresh("node_iter")))
        ctx.nodes.append(helper.make_node("Identity", [true], [b_in[1]], name=ctx.fresh("node_cond")))
        for j in range(n_carried):
            ctx.nodes.append(helper.make_node("Gather", [carried[j], t], [b_in[2 + j]], axis=0,
                                              name=ctx.fresh("node_carried")))
        for s, dy in scan_dys.items():
            seeds.append((b_out[1 + n_carried + s], ctx.op("Gather", [dy, t], axis=0)))
        types = {b_in[0]: (TensorProto.INT64, []), b_in[1]: (TensorProto.BOOL, [])}
        types.update({b_in[2 + j]: (ctx.elem(node.input[2 + j]), ctx.dims(node.input[2 + j])) for j in range(n_carried)})
        wrt = [b_in[2 + j] for j in floats] + [o for o in wanted if o in reads]
        nodes, inits, grads = _body.body_vjp(ctx, original, seeds, wrt, types)
        ctx.nodes.extend(nodes)
        new_dv = [grads[b_in[2 + j]] if b_in[2 + j] in grads else ctx.zeros_like(node.input[2 + j]) for j in floats]
        new_acc = [ctx.op("Add", [acc[o], grads[o]]) if o in grads else ctx.op("Identity", [acc[o]]) for o in wanted]
        return [ctx.op("Identity", [true])] + new_dv + new_acc, inits

    (outs, inits), nodes = _body.emit_into(ctx, reverse)
    inputs = ([_body.value_info(k, TensorProto.INT64, []), _body.value_info(cond, TensorProto.BOOL, [])]
              + [_body.value_info(dv[j], ctx.elem(node.input[2 + j]), ctx.dims(node.input[2 + j])) for j in floats]
              + [_body.value_info(acc[o], ctx.elem(o), ctx.dims(o)) for o in wanted])
    outputs = ([_body.value_info(outs[0], TensorProto.BOOL, [])]
               + [_body.value_info(n, ctx.elem(node.input[2 + j]), ctx.dims(node.input[2 + j]))
                  for n, j in zip(outs[1:], floats)]
               + [_body.value_info(n, ctx.elem(o), ctx.dims(o)) for n, o in zip(outs[1 + len(floats):], wanted)])
    rbody = _body.graph(ctx, "reverse_body", nodes, inputs, outputs, inits)
    init_dv = [dys[j] if j < len(dys) and dys[j] is not None else ctx.zeros_like(node.input[2 + j]) for j in floats]
    init_acc = [ctx.zeros_like(o) for o in wanted]
    n_res = len(floats) + len(wanted)
    res = ctx.op("Loop", [trips, true] + init_dv + init_acc, n_res, body=rbody)
    res = [res] if n_res == 1 else res
    grads = [None] * (n_in + len(outer))
    for j, r in zip(floats, res):
        if need[2 + j]:
            grads[2 + j] = ctx.like(r, node.input[2 + j])
    for o, r in zip(wanted, res[len(floats):]):
        grads[n_in + outer.index(o)] = ctx.like(r, o)
    return grads
