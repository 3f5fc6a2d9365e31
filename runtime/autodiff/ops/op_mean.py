"""Mean (variadic, broadcasting): each input gets dY / n summed back to its shape."""
OP_TYPE = "Mean"


def vjp(ctx, node, dys, need):
    g = dys[0]
    share = ctx.op("Mul", [g, ctx.scalar(1.0 / len(node.input), g)])
    y_dims = ctx.dims(node.output[0])
    if y_dims is not None:
        ctx.info[share] = (ctx.elem(g), y_dims)
    return [ctx.reduce_to(share, x, y_dims) if n else None for x, n in zip(node.input, need)]
