"""Gemm (alpha, beta, transA, transB): Y = alpha * A' B' + beta * C, C broadcast to Y.

dA = alpha * dY B'^T (transposed back when transA), dB = alpha * A'^T dY (transposed back when
transB), dC = beta * dY summed to C's shape. Each is one Gemm with the right transpose flags."""
from onnxforge.runtime.autodiff.ops._common import attr

OP_TYPE = "Gemm"


def vjp(ctx, node, dys, need):
    a, b = node.input[0], node.input[1]
    c = node.input[2] if len(node.input) > 2 and node.input[2] else None
    g = dys[0]
    alpha, beta = attr(node, "alpha", 1.0), attr(node, "beta", 1.0)
    ta, tb = attr(node, "transA", 0), attr(node, "transB", 0)
    al = None if alpha == 1.0 else alpha
    out = [None] * len(node.input)
    if need[0]:
        if not ta:
            out[0] = ctx.op("Gemm", [g, b], alpha=al, transB=0 if tb else 1)
        else:
            out[0] = ctx.op("Gemm", [b, g], alpha=al, transA=1 if tb else 0, transB=1)
        ctx.like(out[0], a)
    if need[1]:
        if not tb:
            out[1] = ctx.op("Gemm", [a, g], alpha=al, transA=0 if ta else 1)
        else:
            out[1] = ctx.op("Gemm", [g, a], alpha=al, transA=1, transB=1 if ta else 0)
        ctx.like(out[1], b)
    if c is not None and need[2]:
        gc = g if beta == 1.0 else ctx.like(ctx.op("Mul", [g, ctx.scalar(beta, g)]), g)
        out[2] = ctx.reduce_to(gc, c, ctx.dims(node.output[0]))
    return out
