"""BatchNormalization (epsilon, momentum, training_mode; channels on axis 1).

Inference form (training_mode=0): Y = scale * (X - mean) / sqrt(var + eps) + B is affine in X;
gradients for X, scale, B, and (as functions) mean and var.
Training form (training_mode=1): the batch's mean and biased variance (computed here from
primitives, not read from the node) normalise X; dX = scale * invstd * (dY - mean(dY) - xhat *
mean(dY * xhat)) over all but the channel axis. The running statistics the node outputs are
updated state: the rule does not differentiate them (a build where one reaches the loss is
refused), and Y does not depend on the input mean and var (their gradient is zero). ``passes.batchnorm_training_form`` rewrites the
inference form into primitives with batch statistics for training."""
from onnxforge.runtime.autodiff.ops._common import attr
from onnxforge.runtime.autodiff.ops._rule import ZERO

OP_TYPE = "BatchNormalization"


def _bcast(ctx, v, rank):
    """A [C] vector viewed as [C, 1, ..., 1] to broadcast against [N, C, ...]."""
    return ctx.op("Unsqueeze", [v, ctx.ints(range(1, rank - 1))]) if rank > 2 else v


def vjp(ctx, node, dys, need):
    x, scale, bias, mean, var = node.input[:5]
    g = dys[0]
    out = [None] * len(node.input)
    if g is None:
        return out
    eps = attr(node, "epsilon", 1e-5)
    r = ctx.need_rank(x)
    axes = ctx.ints([0] + list(range(2, r)))
    training = attr(node, "training_mode", 0)
    if training:
        mu = ctx.op("ReduceMean", [x, axes], keepdims=1) if ctx.opset >= 18 else \
            ctx.op("ReduceMean", [x], keepdims=1, axes=[0] + list(range(2, r)))
        d = ctx.op("Sub", [x, mu])
        v = ctx.op("ReduceMean", [ctx.op("Mul", [d, d]), axes], keepdims=1) if ctx.opset >= 18 else \
            ctx.op("ReduceMean", [ctx.op("Mul", [d, d])], keepdims=1, axes=[0] + list(range(2, r)))
        inv = ctx.op("Reciprocal", [ctx.op("Sqrt", [ctx.op("Add", [v, ctx.scalar(eps, x)])])])
        xhat = ctx.op("Mul", [d, inv])
        sum_g = ctx.op("ReduceSum", [g, axes], keepdims=1)
        sum_gx = ctx.op("ReduceSum", [ctx.op("Mul", [g, xhat]), axes], keepdims=1)
        if need[0]:
            size = ctx.op("Cast", [ctx.op("Size", [x])], to=ctx.elem(g))
            chans = ctx.op("Cast", [ctx.shape(x, 1, 2)], to=ctx.elem(g))
            m = ctx.op("Div", [size, chans])  # elements per channel
            inner = ctx.op("Sub", [ctx.op("Sub", [g, ctx.op("Div", [sum_g, m])]),
                                   ctx.op("Mul", [xhat, ctx.op("Div", [sum_gx, m])])])
            k = ctx.op("Mul", [_bcast(ctx, scale, r), inv])
            out[0] = ctx.like(ctx.op("Mul", [inner, k]), x)
        if need[1]:
            out[1] = ctx.like(ctx.op("Reshape", [sum_gx, ctx.shape(scale)]), scale)
        if need[2]:
            out[2] = ctx.like(ctx.op("Reshape", [sum_g, ctx.shape(bias)]), bias)
        out[3] = ZERO if need[3] else None
        out[4] = ZERO if need[4] else None
        return out
    inv = ctx.op("Reciprocal", [ctx.op("Sqrt", [ctx.op("Add", [var, ctx.scalar(eps, var)])])])  # [C]
    k = ctx.op("Mul", [scale, inv])
    if need[0]:
        out[0] = ctx.like(ctx.op("Mul", [g, _bcast(ctx, k, r)]), x)
    sum_g = ctx.op("ReduceSum", [g, axes], keepdims=0)
    if need[1] or need[4]:
        d = ctx.op("Sub", [x, _bcast(ctx, mean, r)])
        sum_gd = ctx.op("ReduceSum", [ctx.op("Mul", [g, d]), axes], keepdims=0)
        if need[1]:
            out[1] = ctx.like(ctx.op("Mul", [sum_gd, inv]), scale)
        if need[4]:
            inv3 = ctx.op("Mul", [inv, ctx.op("Mul", [inv, inv])])
            out[4] = ctx.like(ctx.op("Mul", [ctx.op("Mul", [sum_gd, scale]),
                                            ctx.op("Mul", [inv3, ctx.scalar(-0.5, var)])]), var)
    if need[2]:
        out[2] = ctx.like(sum_g, bias)
    if need[3]:
        out[3] = ctx.like(ctx.op("Neg", [ctx.op("Mul", [sum_g, k])]), mean)
    return out
