"""MatMul (numpy semantics: batched, broadcast batch dims, 1-D operands).

dA = dY B^T and dB = A^T dY over the last two axes, summed back over broadcast batch axes; a 1-D
operand is first viewed as a row (A) or a column (B) matrix. When B is a matrix and A is batched,
dB is one Gemm over the flattened batch rows (no per-batch products and then a sum); so it is when
A's rank is known only at run time and B is a matrix."""
OP_TYPE = "MatMul"


def _swap_last(ctx, x, rank):
    return ctx.op("Transpose", [x], perm=list(range(rank - 2)) + [rank - 1, rank - 2])


def _bcast(x, y):
    if x == 1:
        return y
    if y == 1 or x == y:
        return x
    return None


def _by_matrix(ctx, a, b, g, need):
    """A of any rank (known only at run time) times a matrix B [K, N]: dA = dY B^T (numpy's
    MatMul gives A's shape for a vector A too) and dB = A'^T dY' with A and dY as rows [-1, K],
    [-1, N] (one Gemm)."""
    out = [None, None]
    if need[0]:
        out[0] = ctx.like(ctx.op("MatMul", [g, ctx.op("Transpose", [b], perm=[1, 0])]), a)
    if need[1]:
        rows = [ctx.op("Reshape", [t, ctx.op("Concat", [ctx.ints([-1]), ctx.shape(b, i, i + 1)], axis=0)])
                for t, i in ((a, 0), (g, 1))]
        out[1] = ctx.like(ctx.op("Gemm", rows, transA=1), b)
    return out


def vjp(ctx, node, dys, need):
    a, b = node.input
    g = dys[0]
    if ctx.rank(a) is None and ctx.rank(b) == 2:
        return _by_matrix(ctx, a, b, g, need)
    ra, rb = ctx.need_rank(a), ctx.need_rank(b)
    a2, b2, g2 = a, b, g
    if ra == 1:
        a2 = ctx.op("Unsqueeze", [a, ctx.ints([0])], dims=[1] + ctx.dims(a))
    if rb == 1:
        b2 = ctx.op("Unsqueeze", [b, ctx.ints([1])], dims=ctx.dims(b) + [1])
    if ra == 1 and rb == 1:
        g2 = ctx.op("Unsqueeze", [g, ctx.ints([0, 1])])
    elif ra == 1:
        g2 = ctx.op("Unsqueeze", [g, ctx.ints([-2])])
    elif rb == 1:
        g2 = ctx.op("Unsqueeze", [g, ctx.ints([-1])])
    ra2, rb2 = max(ra, 2), max(rb, 2)
    a2d, b2d = ctx.dims(a2), ctx.dims(b2)
    ca, cb = a2d[:-2], b2d[:-2]
    r = max(len(ca), len(cb))
    ca, cb = [1] * (r - len(ca)) + ca, [1] * (r - len(cb)) + cb
    batch = [_bcast(x, y) for x, y in zip(ca, cb)]
    out = [None, None]
    if need[0]:
        da = ctx.op("MatMul", [g2, _swap_last(ctx, b2, rb2)])
        da = ctx.reduce_to(da, a2, batch + a2d[-2:])
        if ra == 1:
            da = ctx.op("Reshape", [da, ctx.shape(a)])
        out[0] = ctx.like(da, a)
    if need[1]:
        if rb2 == 2 and ra2 > 2:
            minus1 = ctx.ints([-1])
            af = ctx.op("Reshape", [a2, ctx.op("Concat", [minus1, ctx.shape(a2, -1)], axis=0)])
            gf = ctx.op("Reshape", [g2, ctx.op("Concat", [minus1, ctx.shape(b2, -1)], axis=0)])
            db = ctx.op("Gemm", [af, gf], transA=1)
        else:
            db = ctx.op("MatMul", [_swap_last(ctx, a2, ra2), g2])
            db = ctx.reduce_to(db, b2, batch + b2d[-2:])
        if rb == 1:
            db = ctx.op("Reshape", [db, ctx.shape(b)])
        out[1] = ctx.like(db, b)
    return out
