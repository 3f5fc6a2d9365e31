"""Mod with fmod=1 (floats): Y = A - B * trunc(A / B), so dA = dY and dB = -dY * trunc(A / B),
with trunc(A / B) read back as (A - Y) / B; each summed back to its shape. Integer Mod carries
no gradient."""
from onnxforge.runtime.autodiff.ops._common import unbroadcast_binary

OP_TYPE = "Mod"


def vjp(ctx, node, dys, need):
    a, b, y = node.input[0], node.input[1], node.output[0]
    g = dys[0]
    ga = g if need[0] else None
    gb = None
    if need[1]:
        q = ctx.op("Div", [ctx.op("Sub", [a, y]), b])
        gb = ctx.op("Neg", [ctx.op("Mul", [g, ctx.op("Round", [q])])])
    if ga is g:
        ga = ctx.op("Identity", [g])
    return unbroadcast_binary(ctx, node, ga, gb, need)
