"""Transpose (perm, default reversed axes): dX = Transpose(dY, inverse perm)."""
from onnxforge.runtime.autodiff.ops._common import attr

OP_TYPE = "Transpose"


def vjp(ctx, node, dys, need):
    perm = attr(node, "perm")
    if perm is None:
        r = ctx.need_rank(node.input[0])
        perm = list(range(r))[::-1]
    inv = [0] * len(perm)
    for i, p in enumerate(perm):
        inv[p] = i
    return [ctx.like(ctx.op("Transpose", [dys[0]], perm=inv), node.input[0])]
