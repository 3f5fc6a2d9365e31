"""Split (axis, split or num_outputs): dX = Concat of the outputs' gradients along the axis,
zeros for outputs that get none."""
from onnxforge.runtime.autodiff.ops._common import attr

OP_TYPE = "Split"
GRAD_OUTPUTS = "all"
NON_DIFFERENTIABLE_INPUTS = (1,)


def vjp(ctx, node, dys, need):
    axis = attr(node, "axis", 0)
    parts = [d if d is not None else ctx.zeros_like(o) for o, d in zip(node.output, dys)]
    x = node.input[0]
    return [ctx.like(ctx.op("Concat", parts, axis=axis), x)] + [None] * (len(node.input) - 1)
