"""Transpose (perm, default reversed axes): dX = Transpose(dY, inverse perm); without perm,
dX = Transpose(dY) (the rank may be known only at run time)."""
from onnxforge.runtime.autodiff.ops._common import attr

OP_TYPE = "Transpose"


def vjp(ctx, node, dys, need):
    perm = attr(node, "perm")
    if perm is None:  # reversing the axes is its own inverse, whatever the rank
        return [ctx.like(ctx.op("Transpose", [dys[0]]), node.input[0])]
    inv = [0] * len(perm)
    for i, p in enumerate(perm):
        inv[p] = i
    return [ctx.like(ctx.op("Transpose", [dys[0]], perm=inv), node.input[0])]
