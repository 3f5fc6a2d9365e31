"""Dropout (ratio, training_mode as inputs from opset 12): dX = dY * mask / (1 - ratio) in
training, dY in inference. The forward node is made to output its mask when it does not.
The ratio has no effect in inference (its gradient is zero there); in training the mask is a
random draw that depends on it, which has no derivative: refused."""
import numpy as np

from onnxforge.runtime.autodiff.ops._rule import ZERO

OP_TYPE = "Dropout"
NON_DIFFERENTIABLE_INPUTS = (2,)


def vjp(ctx, node, dys, need):
    x, g = node.input[0], dys[0]
    ratio = node.input[1] if len(node.input) > 1 and node.input[1] else None
    training = node.input[2] if len(node.input) > 2 and node.input[2] else None
    rest = [None] * (len(node.input) - 1)
    if len(need) > 1 and need[1]:
        rest[0] = ZERO
    tv = None if training is None else ctx.value(training)
    if training is None or (tv is not None and not bool(np.asarray(tv))):
        return [g] + rest
    if len(need) > 1 and need[1]:
        ctx.refuse("the ratio of a Dropout in training mode has no derivative (the mask is a random draw)")
    mask = ctx.ensure_output(node, 1, "dropout_mask")
    r = ratio if ratio is not None else ctx.scalar(0.5, g)
    if ctx.elem(r) != ctx.elem(g):
        r = ctx.op("Cast", [r], to=ctx.elem(g))
    if tv is None:  # training_mode known only at run time: scale 1 / (1 - ratio * training)
        r = ctx.op("Mul", [r, ctx.op("Cast", [training], to=ctx.elem(g))])
    scale = ctx.op("Div", [ctx.scalar(1.0, g), ctx.op("Sub", [ctx.scalar(1.0, g), r])])
    kept = ctx.op("Where", [mask, g, ctx.scalar(0.0, g)])
    return [ctx.like(ctx.op("Mul", [kept, scale]), x)] + rest
