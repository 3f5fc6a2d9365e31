"""If (then_branch, else_branch): the gradient is an If on the same condition whose branches are
the vector-Jacobian products of the forward's branches (each recomputes its forward, then runs
its backward: ops/_body.py). Each returns the gradient of every outer value that needs one and
that either branch reads (zeros where its own branch does not read it), so both have the same
outputs. The condition carries no gradient."""
from onnxforge.runtime.autodiff.ops import _body
from onnxforge.runtime.autodiff.ops._common import attr

OP_TYPE = "If"
SUBGRAPHS = True
GRAD_OUTPUTS = "all"
NON_DIFFERENTIABLE_INPUTS = (0,)


def check(node, info):
    seqs = getattr(info, "sequences", set())
    for name in list(node.output) + _body.outer_reads(node):
        if name in seqs:
            return f"{name!r} is a sequence; If over sequences is not covered"
    return _body.problems(node, info)


def vjp(ctx, node, dys, need):
    outer = _body.outer_reads(node)
    wanted = [o for o, n in zip(outer, need[1:]) if n]
    branches = []
    for key in ("then_branch", "else_branch"):
        g = attr(node, key)
        seeds = {o.name: d for o, d in zip(g.output, dys) if d is not None}
        reads = _body._graph_reads(g)
        nodes, inits, grads = _body.body_vjp(ctx, g, seeds, [o for o in wanted if o in reads])

        def zeros(names=grads):
            return [names[o] if o in names else ctx.zeros_like(o) for o in wanted]
        outs, extra = _body.emit_into(ctx, zeros)
        outputs = [_body.value_info(n, ctx.elem(o), ctx.dims(o)) for n, o in zip(outs, wanted)]
        branches.append(_body.graph(ctx, key, nodes + extra, [], outputs, inits))
    res = ctx.op("If", [node.input[0]], len(wanted), then_branch=branches[0], else_branch=branches[1])
    res = [res] if len(wanted) == 1 else res
    got = dict(zip(wanted, res))
    for o, r in got.items():
        ctx.like(r, o)
    return [None] + [got.get(o) if n else None for o, n in zip(outer, need[1:])]
