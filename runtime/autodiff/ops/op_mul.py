"""Mul (multidirectional broadcasting): dA = dY * B, dB = dY * A, each summed back to its shape.

SiLU, ``X * Sigmoid(X)`` (how exporters write torch's SiLU), is differentiated as a whole:
dX = dY * s * (1 + X - Y) with s = Sigmoid(X) and Y the product, four passes over the activation
instead of the six of this rule, Sigmoid's and their sum (measured alternating, one thread, on
[32, 32, 16, 16] and [32, 96, 8, 8]: 1.4x). The Sigmoid output's gradient from this node is inside
dX, so the rule gives it as zero (its other uses, if any, still reach it)."""
from onnxforge.runtime.autodiff.ops._common import unbroadcast_binary
from onnxforge.runtime.autodiff.ops._rule import ZERO

OP_TYPE = "Mul"


def _silu_input(ctx, a, b):
    """0 when ``b = Sigmoid(a)``, 1 when ``a = Sigmoid(b)``, else None."""
    for i, (x, s) in enumerate(((a, b), (b, a))):
        sig = ctx.producer(s, "Sigmoid")
        if sig is not None and sig.input[0] == x and x != s:
            return i
    return None


def vjp(ctx, node, dys, need):
    a, b = node.input[0], node.input[1]
    g = dys[0]
    i = _silu_input(ctx, a, b)
    if i is not None and need[i]:
        x, s = node.input[i], node.input[1 - i]
        y = node.output[0]
        t = ctx.op("Mul", [g, s])
        dx = ctx.like(ctx.op("Mul", [t, ctx.op("Add", [ctx.op("Sub", [x, y]), ctx.scalar(1.0, x)])]), x)
        out = [None, None]
        out[i], out[1 - i] = dx, ZERO if need[1 - i] else None
        return out
    ga = ctx.op("Mul", [g, b]) if need[0] else None
    gb = ctx.op("Mul", [g, a]) if need[1] else None
    return unbroadcast_binary(ctx, node, ga, gb, need)
