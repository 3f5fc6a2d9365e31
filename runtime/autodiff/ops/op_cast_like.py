"""CastLike(X, target_type): dX = Cast(dY, to=type of X); only the target's element type is
read, never its values: its gradient is zero."""
from onnxforge.runtime.autodiff.ops._rule import ZERO

OP_TYPE = "CastLike"


def vjp(ctx, node, dys, need):
    x, g = node.input[0], dys[0]
    gx = g if ctx.elem(x) == ctx.elem(g) else ctx.like(ctx.op("Cast", [g], to=ctx.elem(x)), x)
    return [gx if need[0] else None, ZERO if need[1] else None]
