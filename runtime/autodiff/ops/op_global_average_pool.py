"""GlobalAveragePool: dX = dY broadcast over the spatial axes, divided by their size.

With the spatial dims known, one broadcasting Mul of dY [N, C, 1, ...] by a constant [1, 1, *S]
filled with 1/size writes dX in one pass (measured alternating, one thread, against Expand then
Mul: 1.4x on [32, 8, 16, 16], 2.5x on [32, 48, 8, 8]: squeeze-excite's pools)."""
import numpy as np

OP_TYPE = "GlobalAveragePool"


def vjp(ctx, node, dys, need):
    x, g = node.input[0], dys[0]
    dims = ctx.dims(x)
    spatial = dims[2:] if dims is not None else None
    if spatial is not None and all(isinstance(d, int) and d > 0 for d in spatial):
        count = int(np.prod(spatial))
        fill = ctx.const(np.full([1, 1, *spatial], 1.0 / count, ctx.np_dtype(g)))
        return [ctx.like(ctx.op("Mul", [g, fill]), x)]
    e = ctx.op("Expand", [g, ctx.shape(x)])
    sdims = ctx.static_dims(x)
    if sdims is not None:
        out = ctx.op("Mul", [e, ctx.scalar(1.0 / int(np.prod(sdims[2:])), g)])
    else:
        spatial_size = ctx.op("ReduceProd", [ctx.shape(x, 2)], keepdims=0)
        out = ctx.op("Div", [e, ctx.op("Cast", [spatial_size], to=ctx.elem(g))])
    return [ctx.like(out, x)]
