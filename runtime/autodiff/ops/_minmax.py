"""The shared rule of Max and Min: the gradient goes to the inputs equal to the result, split
evenly between ties (PyTorch's maximum/minimum give half to each of two equal inputs)."""


def vjp(ctx, node, dys, need):
    y, g = node.output[0], dys[0]
    if len(node.input) == 1:
        return [g]
    y_dims = ctx.dims(y)
    hits = [ctx.op("Cast", [ctx.op("Equal", [x, y])], to=ctx.elem(g)) for x in node.input]
    count = ctx.op("Sum", hits) if len(hits) > 2 else ctx.op("Add", hits)
    share = ctx.op("Div", [g, count])
    return [ctx.reduce_to(ctx.op("Mul", [share, h]), x, y_dims) if n else None
            for x, h, n in zip(node.input, hits, need)]
