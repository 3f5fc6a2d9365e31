"""BatchNormalization (epsilon, momentum, training_mode; channels on axis 1).

Inference form (training_mode=0): Y = scale * (X - mean) / sqrt(var + eps) + B is affine in X;
gradients for X, scale, B, and (as functions) mean and var.

Batch statistics: when mean and var are X's own batch statistics (``passes.batchnorm_training_form``
writes that pattern; ``_norm.batch_statistics`` recognises it) or training_mode=1, the node is
differentiated as a whole, in closed form, with d = X - mean and istd = 1 / sqrt(var + eps):
dscale = istd * sum(dY * d), dB = sum(dY), dX = scale * istd * (dY - sum(dY) / M - d * istd^2 *
sum(dY * d) / M) (sums over all but the channel axis, M elements each). dX is one per-channel
combination ``k * dY + b * d + c``: two inference-form BatchNormalizations (mean 0, var 1, epsilon
0: exact per-channel scale and shift), of dY by k and c and of d by b, added. ONNX Runtime's
per-channel broadcast Mul is 1.2-3.2x slower than that kernel (the more so the smaller H*W). The gradients through mean and var are inside dX, so the
rule gives them as zero (the ReduceMean/ReduceSumSquare nodes get no cotangent from here). Measured
(docs/notes/training-speed.md): six passes over the activation instead of the fifteen of
differentiating the statistics' primitives one by one.

Under training_mode=1 the running statistics the node outputs are updated state: the rule does not
differentiate them (a build where one reaches the loss is refused), and Y does not depend on the
input mean and var (their gradient is zero)."""
import numpy as np

from onnxforge.runtime.autodiff.ops._common import attr, reduce
from onnxforge.runtime.autodiff.ops._norm import batch_statistics
from onnxforge.runtime.autodiff.ops._rule import ZERO

OP_TYPE = "BatchNormalization"


def _bcast(ctx, v, rank):
    """A [C] vector viewed as [C, 1, ..., 1] to broadcast against [N, C, ...]."""
    return ctx.op("Unsqueeze", [v, ctx.ints(range(1, rank - 1))]) if rank > 2 else v


def _neg_inverse_count(ctx, x):
    """-1 / (elements per channel), [1]: a constant when the dims are known, else -C / Size(X)."""
    dims, elem = ctx.dims(x), ctx.np_dtype(x)
    if dims is not None and all(isinstance(v, int) for v in dims):
        return ctx.const(np.array([-dims[1] / float(np.prod(dims))], elem))
    chans = (ctx.const(np.array([-dims[1]], elem)) if dims is not None and isinstance(dims[1], int)
             else ctx.op("Neg", [ctx.op("Cast", [ctx.shape(x, 1, 2)], to=ctx.elem(x))]))
    return ctx.op("Div", [chans, ctx.op("Cast", [ctx.op("Size", [x])], to=ctx.elem(x))])


def _zeros_ones(ctx, var, istd):
    """[C] zeros and ones: constants when C is known, else made from ``istd`` (finite, positive)."""
    c = (ctx.dims(var) or [None])[0]
    if isinstance(c, int):
        return (ctx.const(np.full(c, v, ctx.np_dtype(var))) for v in (0.0, 1.0))
    zeros = ctx.op("Mul", [istd, ctx.scalar(0.0, var)])
    return zeros, ctx.op("Add", [zeros, ctx.scalar(1.0, var)])


def _batch_form(ctx, node, g, need, d, neg_inv_m):
    """The closed form (module docstring) from the centred X ``d`` and -1/M ``neg_inv_m``."""
    x, scale, bias, _, var = node.input[:5]
    r = ctx.need_rank(x)
    axes = [0] + list(range(2, r))
    out = [None] * len(node.input)
    istd = ctx.op("Reciprocal", [ctx.op("Sqrt", [ctx.op("Add", [var, ctx.scalar(attr(node, "epsilon", 1e-5), var)])])])
    sum_g = reduce(ctx, "ReduceSum", g, axes, keepdims=0)
    sum_gd = reduce(ctx, "ReduceSum", ctx.op("Mul", [g, d]), axes, keepdims=0) if need[0] or need[1] else None
    if need[0]:
        k = ctx.op("Mul", [scale, istd])
        nk_m = ctx.op("Mul", [k, neg_inv_m])                       # -k / M
        b = ctx.op("Mul", [ctx.op("Mul", [nk_m, ctx.op("Mul", [istd, istd])]), sum_gd])
        c = ctx.op("Mul", [nk_m, sum_g])
        zeros, ones = _zeros_ones(ctx, var, istd)
        scaled_g = ctx.op("BatchNormalization", [g, k, c, zeros, ones], epsilon=0.0)
        scaled_d = ctx.op("BatchNormalization", [d, b, zeros, zeros, ones], epsilon=0.0)
        out[0] = ctx.like(ctx.op("Add", [scaled_g, scaled_d]), x)
    if need[1]:
        out[1] = ctx.like(ctx.op("Mul", [sum_gd, istd]), scale)
    if need[2]:
        out[2] = ctx.like(sum_g, bias)
    out[3] = ZERO if need[3] else None  # inside dX (batch statistics) or not read (training_mode=1)
    out[4] = ZERO if need[4] else None
    return out


def _training_mode(ctx, node, g, need):
    """training_mode=1: the batch's statistics computed here, then the closed form."""
    x = node.input[0]
    r = ctx.need_rank(x)
    axes = [0] + list(range(2, r))
    mu = reduce(ctx, "ReduceMean", x, axes, keepdims=0)
    d = ctx.op("Sub", [x, _bcast(ctx, mu, r)])
    var = reduce(ctx, "ReduceMean", ctx.op("Mul", [d, d]), axes, keepdims=0)
    batch = type(node)()
    batch.CopyFrom(node)
    batch.input[4] = var
    return _batch_form(ctx, batch, g, need, d, _neg_inverse_count(ctx, x))


def vjp(ctx, node, dys, need):
    x, scale, bias, mean, var = node.input[:5]
    g = dys[0]
    out = [None] * len(node.input)
    if g is None:
        return out
    if attr(node, "training_mode", 0):
        return _training_mode(ctx, node, g, need)
    d = batch_statistics(ctx, node)
    if d is not None:
        return _batch_form(ctx, node, g, need, d, _neg_inverse_count(ctx, x))
    eps = attr(node, "epsilon", 1e-5)
    r = ctx.need_rank(x)
    axes = ctx.ints([0] + list(range(2, r)))
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
