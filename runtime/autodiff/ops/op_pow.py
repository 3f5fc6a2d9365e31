"""Pow (multidirectional broadcasting): dA = dY * B * A^(B-1) (0 where B == 0),
dB = dY * Y * log(A) (0 where A == 0 and B >= 0), PyTorch's conventions."""
from onnxforge.runtime.autodiff.ops._common import unbroadcast_binary

OP_TYPE = "Pow"


def vjp(ctx, node, dys, need):
    a, b, y = node.input[0], node.input[1], node.output[0]
    g = dys[0]
    bf = b if ctx.elem(b) == ctx.elem(a) else ctx.op("Cast", [b], to=ctx.elem(a))
    zero = ctx.scalar(0.0, a)
    ga = gb = None
    if need[0]:
        bval = ctx.value(bf) if bf == b else None
        if bval is not None and bval.size == 1 and float(bval) == 2.0:
            ga = ctx.op("Mul", [g, ctx.op("Mul", [a, ctx.scalar(2.0, a)])])
        else:
            p = ctx.op("Pow", [a, ctx.op("Sub", [bf, ctx.scalar(1.0, a)])])
            ga = ctx.op("Mul", [g, ctx.op("Mul", [bf, p])])
            ga = ctx.op("Where", [ctx.op("Equal", [bf, zero]), zero, ga])
    if need[1]:
        gb = ctx.op("Mul", [ctx.op("Mul", [g, y]), ctx.op("Log", [a])])
        mask = ctx.op("And", [ctx.op("Equal", [a, zero]), ctx.op("GreaterOrEqual", [bf, zero])])
        gb = ctx.op("Where", [mask, zero, gb])
    return unbroadcast_binary(ctx, node, ga, gb, need)
