"""Einsum (equation): the gradient of operand i is itself an Einsum, of dY and the other operands,
into operand i's subscripts: "out,others->term_i". A letter only operand i has (summed away
alone) is missing from that product: the Einsum then gives term_i without it and the result is
broadcast back along it (Unsqueeze, Expand). Broadcast ellipsis dims are summed back to the
operand's shape. A letter repeated inside one term (a diagonal) is not covered."""
from onnxforge.runtime.autodiff.ops._common import attr

OP_TYPE = "Einsum"


def _parse(eq: str):
    eq = eq.replace(" ", "")
    lhs, _, rhs = eq.partition("->")
    terms = lhs.split(",")
    if "->" not in eq:  # implicit output: the letters that appear once, in order
        letters = [c for c in lhs if c.isalpha()]
        rhs = ("..." if "..." in lhs else "") + "".join(sorted(c for c in set(letters) if letters.count(c) == 1))
    return terms, rhs


def _letters(term):
    return [c for c in term.replace("...", "") if c.isalpha()]


def check(node, info):
    terms, _ = _parse(attr(node, "equation"))
    for t in terms:
        ls = _letters(t)
        if len(set(ls)) != len(ls):
            return f"the term {t!r} repeats a letter (a diagonal), which is not covered"
    return None


def vjp(ctx, node, dys, need):
    terms, rhs = _parse(attr(node, "equation"))
    g = dys[0]
    out = []
    for i, (x, term, n) in enumerate(zip(node.input, terms, need)):
        if not n:
            out.append(None)
            continue
        others = [(t, v) for j, (t, v) in enumerate(zip(terms, node.input)) if j != i]
        present = set(_letters(rhs)).union(*[set(_letters(t)) for t, _ in others])
        alone = [c for c in _letters(term) if c not in present]
        target = "".join(c for c in term if c not in alone)
        eq = ",".join([rhs] + [t for t, _ in others]) + "->" + target
        gx = ctx.op("Einsum", [g] + [v for _, v in others], equation=eq)
        if alone:
            ell = ctx.need_rank(x) - len(_letters(term))  # dims the ellipsis stands for
            pos, k, j = [], 0, 0
            while j < len(term):
                if term.startswith("...", j):
                    k, j = k + ell, j + 3
                    continue
                if term[j] in alone:
                    pos.append(k)
                k, j = k + 1, j + 1
            gx = ctx.op("Expand", [ctx.op("Unsqueeze", [gx, ctx.ints(pos)]), ctx.shape(x)])
        out.append(ctx.reduce_to(gx, x) if "..." in term else ctx.like(gx, x))
    return out
