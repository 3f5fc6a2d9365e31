"""GlobalMaxPool: the maximum over the spatial axes (ReduceMax over axes 2.., kept): dY goes to
the elements equal to it, split evenly between ties (as ReduceMax)."""
OP_TYPE = "GlobalMaxPool"


def vjp(ctx, node, dys, need):
    x, y, g = node.input[0], node.output[0], dys[0]
    r = ctx.need_rank(x)
    hit = ctx.op("Cast", [ctx.op("Equal", [x, y])], to=ctx.elem(x))
    axes = list(range(2, r))
    count = ctx.op("ReduceSum", [hit, ctx.ints(axes)], keepdims=1)
    return [ctx.like(ctx.op("Mul", [ctx.op("Div", [hit, count]), g]), x)]
