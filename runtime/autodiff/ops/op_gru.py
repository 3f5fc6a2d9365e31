"""GRU (direction forward/reverse/bidirectional, hidden_size, initial_h, linear_before_reset;
ONNX gate order z, r, h; default activations, no sequence_lens, no clip, layout 0).

As the LSTM rule: per direction, in processing order, the previous hidden states are the node's
own Y shifted by one step (h0 first; Y is declared when only Y_h was), so every gate of every
step comes from batched MatMuls; then one reverse Scan carries dh back through time and emits each
step's pre-activation gradients [dz, dr, dh~] (and, with linear_before_reset, the gradient of
``H R_h^T + Rb_h``). From them: dX = dA W, dW = dA^T X, dR, dB as sums, and the final state of
the Scan is d initial_h."""
from onnxforge.runtime.autodiff.ops import _rnn as rnn
from onnxforge.runtime.autodiff.ops._common import attr

OP_TYPE = "GRU"
GRAD_OUTPUTS = "all"
NON_DIFFERENTIABLE_INPUTS = (4,)


def check(node, info):
    ins = list(node.input) + [""] * (6 - len(node.input))
    if ins[4]:
        return "sequence_lens is not covered (pad sequences instead)"
    if attr(node, "layout", 0) != 0:
        return "layout=1 is not covered"
    if attr(node, "clip") is not None:
        return "clip is not covered"
    acts = attr(node, "activations")
    if acts is not None and [a.lower() for a in acts] not in (["sigmoid", "tanh"], ["sigmoid", "tanh"] * 2):
        return f"activations {acts} are not covered (only the default Sigmoid, Tanh)"
    return None


def _direction(ctx, node, d, reverse, dy, dyh, need):
    ins = list(node.input) + [""] * (6 - len(node.input))
    x, w, r, b, _, h0 = ins[:6]
    y = node.output[0] if node.output and node.output[0] else ctx.ensure_output(node, 0, "gru_y")
    H = attr(node, "hidden_size")
    lbr = bool(attr(node, "linear_before_reset", 0))
    elem, dt = ctx.elem(x), ctx.np_dtype(x)
    wd, rd = rnn.select(ctx, w, d), rnn.select(ctx, r, d)          # [3H, I], [3H, H]
    r_zr, r_h = ctx.op("Split", [rd, ctx.ints([2 * H, H])], 2, axis=0)
    xs = rnn.reverse(ctx, x) if reverse else x                     # processing order [T, N, I]
    _, hp, _ = rnn.previous_states(ctx, x, y, d, reverse, h0, H)
    xw = ctx.op("MatMul", [xs, ctx.op("Transpose", [wd], perm=[1, 0])])
    hr = ctx.op("MatMul", [hp, ctx.op("Transpose", [r_zr], perm=[1, 0])])
    if b:
        wb, rb = ctx.op("Split", [rnn.select(ctx, b, d), ctx.ints([3 * H, 3 * H])], 2, axis=0)
        rb_zr, rb_h = ctx.op("Split", [rb, ctx.ints([2 * H, H])], 2, axis=0)
        xw = ctx.op("Add", [xw, wb])
        hr = ctx.op("Add", [hr, rb_zr])
    x_zr = ctx.op("Slice", [xw, ctx.ints([0]), ctx.ints([2 * H]), ctx.ints([2])])
    x_h = ctx.op("Slice", [xw, ctx.ints([2 * H]), ctx.ints([3 * H]), ctx.ints([2])])
    zr = ctx.op("Sigmoid", [ctx.op("Add", [x_zr, hr])])
    z, rg = ctx.op("Split", [zr, ctx.ints([H, H])], 2, axis=2)
    r_h_t = ctx.op("Transpose", [r_h], perm=[1, 0])
    if lbr:
        u = ctx.op("MatMul", [hp, r_h_t])
        if b:
            u = ctx.op("Add", [u, rb_h])
        a_h = ctx.op("Add", [x_h, ctx.op("Mul", [rg, u])])
    else:
        rh = ctx.op("Mul", [rg, hp])
        a_h = ctx.op("Add", [x_h, ctx.op("MatMul", [rh, r_h_t])])
        if b:
            a_h = ctx.op("Add", [a_h, rb_h])
    hh = ctx.op("Tanh", [a_h])
    # incoming gradients in processing order; missing ones are zeros
    if dy is not None:
        dyd = ctx.op("Squeeze", [ctx.op("Gather", [dy, ctx.ints([d])], axis=1), ctx.ints([1])])
        dyd = rnn.reverse(ctx, dyd) if reverse else dyd
    else:
        dyd = ctx.op("ConstantOfShape", [ctx.shape(hh)], value=rnn.zeros_value(dt))
    if dyh is not None:
        dh_T = rnn.select(ctx, dyh, d)
    else:
        dh_T = ctx.op("ConstantOfShape", [ctx.op("Concat", [ctx.shape(x, 1, 2), ctx.ints([H])], axis=0)],
                      value=rnn.zeros_value(dt))
    # the backward Scan, fed last step first: per step one pack [N, 5H (6H)] of dy, z, r, h~, h_prev (, u)
    parts = [dyd, zr, hh, hp] + ([u] if lbr else [])
    pack = rnn.reverse(ctx, ctx.op("Concat", parts, axis=2))
    n = {k: ctx.fresh(f"gru_b_{k}") for k in ("dh", "pack", "dh_out", "da")}
    one = ctx.scalar(1.0, x)
    k = 6 if lbr else 5

    def body():
        pieces = ctx.op("Split", [n["pack"], ctx.ints([H] * k)], k, axis=-1)
        dy_, z_, r_, hh_, hp_ = pieces[:5]
        dH = ctx.op("Add", [dy_, n["dh"]])
        dz = ctx.op("Mul", [dH, ctx.op("Sub", [hp_, hh_])])
        dah = ctx.op("Mul", [ctx.op("Mul", [dH, ctx.op("Sub", [one, z_])]),
                             ctx.op("Sub", [one, ctx.op("Mul", [hh_, hh_])])])
        dhp = [ctx.op("Mul", [dH, z_])]
        if lbr:
            du = ctx.op("Mul", [dah, r_])
            dr = ctx.op("Mul", [dah, pieces[5]])
            dhp.append(ctx.op("MatMul", [du, r_h]))
            extra = [du]
        else:
            drh = ctx.op("MatMul", [dah, r_h])
            dr = ctx.op("Mul", [drh, hp_])
            dhp.append(ctx.op("Mul", [drh, r_]))
            extra = []
        sig = lambda dv, s: ctx.op("Mul", [dv, ctx.op("Mul", [s, ctx.op("Sub", [one, s])])])  # noqa: E731
        da_zr = ctx.op("Concat", [sig(dz, z_), sig(dr, r_)], axis=-1)
        dhp.append(ctx.op("MatMul", [da_zr, r_zr]))
        ctx.nodes.append(rnn.node(ctx, "Sum", dhp, [n["dh_out"]]))
        ctx.nodes.append(rnn.node(ctx, "Concat", [da_zr, dah] + extra, [n["da"]], axis=-1))

    g = ctx.subgraph("gru_backward", [(n["dh"], elem, 2), (n["pack"], elem, 2)],
                     [(n["dh_out"], elem, 2), (n["da"], elem, 2)], body)
    dh0, da = ctx.op("Scan", [dh_T, pack], 2, body=g, num_scan_inputs=1)
    da = rnn.reverse(ctx, da)                                      # processing order [T, N, 3H (4H)]
    da_x = ctx.op("Slice", [da, ctx.ints([0]), ctx.ints([3 * H]), ctx.ints([2])]) if lbr else da
    flat = lambda t, width: ctx.op("Reshape", [t, ctx.ints([-1, width])])  # noqa: E731
    res = {"h0": dh0}
    if need[0]:
        dx = ctx.op("MatMul", [da_x, wd])
        res["x"] = rnn.reverse(ctx, dx) if reverse else dx
    if need[1]:
        xs_flat = ctx.op("Reshape", [xs, ctx.op("Concat", [ctx.ints([-1]), ctx.shape(x, 2, 3)], axis=0)])
        res["w"] = ctx.op("Gemm", [flat(da_x, 3 * H), xs_flat], transA=1)
    # the gradient of the recurrent term of the candidate: with respect to (r * h_prev) R_h^T,
    # or, with linear_before_reset, to h_prev R_h^T + Rb_h
    g_h = ctx.op("Slice", [da, ctx.ints([3 * H]), ctx.ints([4 * H]), ctx.ints([2])]) if lbr else \
        ctx.op("Slice", [da, ctx.ints([2 * H]), ctx.ints([3 * H]), ctx.ints([2])])
    if need[2]:
        da_zr = ctx.op("Slice", [da, ctx.ints([0]), ctx.ints([2 * H]), ctx.ints([2])])
        d_rzr = ctx.op("Gemm", [flat(da_zr, 2 * H), flat(hp, H)], transA=1)
        d_rh = ctx.op("Gemm", [flat(g_h, H), flat(hp if lbr else rh, H)], transA=1)
        res["r"] = ctx.op("Concat", [d_rzr, d_rh], axis=0)
    if len(need) > 3 and need[3]:
        sums = lambda t: ctx.op("ReduceSum", [t, ctx.ints([0, 1])], keepdims=0)  # noqa: E731
        d_wb = sums(da_x)
        d_rb = ctx.op("Concat", [ctx.op("Slice", [d_wb, ctx.ints([0]), ctx.ints([2 * H]), ctx.ints([0])]),
                                 sums(g_h)], axis=0)
        res["b"] = ctx.op("Concat", [d_wb, d_rb], axis=0)
    return res


def vjp(ctx, node, dys, need):
    dirs = rnn.directions(node, attr)
    dys = list(dys) + [None] * (2 - len(dys))
    need = list(need) + [False] * (6 - len(need))
    per = [_direction(ctx, node, d, rev, dys[0], dys[1], need) for d, rev in enumerate(dirs)]
    out = [None] * len(node.input)
    if need[0]:
        out[0] = ctx.like(ctx.sum([p["x"] for p in per]), node.input[0])
    for idx, key in ((1, "w"), (2, "r"), (3, "b"), (5, "h0")):
        if idx < len(node.input) and need[idx]:
            out[idx] = ctx.like(rnn.stack_directions(ctx, per, key), node.input[idx])
    return out
