"""ReduceProd: dX = dY * (the product of the other elements of the slot), exact with zeros:
with z the number of zeros in the slot and p the product of its non-zero elements,
d = p / X where z = 0; p at the zero where z = 1; 0 elsewhere."""
from onnxforge.runtime.autodiff.ops import _reduce
from onnxforge.runtime.autodiff.ops._common import attr

OP_TYPE = "ReduceProd"
NON_DIFFERENTIABLE_INPUTS = (1,)


def _same(ctx, node, op, t):
    """``op`` over the node's axes, kept (axes as an attribute or an input, as the opset takes)."""
    axes = attr(node, "axes")
    noop = attr(node, "noop_with_empty_axes", 0) or None
    as_input = ctx.opset >= (13 if op == "ReduceSum" else 18)
    if axes is not None and not as_input:
        return ctx.op(op, [t], keepdims=1, axes=axes, noop_with_empty_axes=noop)
    axes_in = ctx.ints(axes) if axes is not None else (node.input[1] if len(node.input) > 1 else "")
    return ctx.op(op, [t, axes_in] if axes_in else [t], keepdims=1, noop_with_empty_axes=noop)


def vjp(ctx, node, dys, need):
    def local(x, yk):
        one, zero = ctx.scalar(1.0, x), ctx.scalar(0.0, x)
        is0 = ctx.op("Equal", [x, zero])
        nonzero = ctx.op("Where", [is0, one, x])
        p = _same(ctx, node, "ReduceProd", nonzero)
        z = _same(ctx, node, "ReduceSum", ctx.op("Cast", [is0], to=ctx.elem(x)))
        at_zero = ctx.op("Where", [ctx.op("Equal", [z, one]), p, zero])
        elsewhere = ctx.op("Where", [ctx.op("Equal", [z, zero]), ctx.op("Div", [p, nonzero]), zero])
        return ctx.op("Where", [is0, at_zero, elsewhere])
    return _reduce.elementwise(ctx, node, dys, local)
