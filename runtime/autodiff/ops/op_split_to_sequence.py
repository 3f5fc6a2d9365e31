"""SplitToSequence (axis, keepdims): dX = ConcatFromSequence(dS) along the axis; when no split
is given and keepdims=0 the pieces lost the axis, so they are stacked on a new one (new_axis=1)."""
from onnxforge.runtime.autodiff.ops._common import attr

OP_TYPE = "SplitToSequence"
NON_TENSOR = True  # reads or writes sequences of tensors
NON_DIFFERENTIABLE_INPUTS = (1,)


def vjp(ctx, node, dys, need):
    x = node.input[0]
    has_split = len(node.input) > 1 and bool(node.input[1])
    new_axis = 1 if not has_split and attr(node, "keepdims", 1) == 0 else None
    dx = ctx.op("ConcatFromSequence", [dys[0]], axis=attr(node, "axis", 0), new_axis=new_axis, elem=ctx.elem(x))
    return [ctx.like(dx, x)] + [None] * (len(node.input) - 1)
