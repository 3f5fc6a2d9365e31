"""Erf: dX = dY * 2/sqrt(pi) * exp(-X^2)."""
import math

OP_TYPE = "Erf"


def vjp(ctx, node, dys, need):
    x, g = node.input[0], dys[0]
    e = ctx.op("Exp", [ctx.op("Neg", [ctx.op("Mul", [x, x])])])
    scaled = ctx.op("Mul", [g, ctx.scalar(2.0 / math.sqrt(math.pi), g)])
    return [ctx.like(ctx.op("Mul", [scaled, e]), g)]
