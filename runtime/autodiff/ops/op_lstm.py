"""LSTM (direction forward/reverse/bidirectional, hidden_size, initial_h, initial_c; ONNX gate
order i, o, f, c; default activations, no peepholes, no sequence_lens, no clip, layout 0).

Per direction, in processing order: the previous hidden states are the node's own Y shifted by
one step (h0 first), so all four gates of every step come from one Gemm over the T*N rows of
[x, h_prev] by [W, R]^T with the biases as its C (measured alternating in one process, one
thread, load 9: the T20 h64 b64 step 1.07x, 1.09x with AdamW, 1.17x with SGD, against two
batched MatMuls and two Adds); the cell
states come from a small forward Scan (c = f * c_prev + i * g); then one reverse Scan carries dh
and dc back through time and emits each step's pre-activation gradient dA [N, 4H]. From dA:
dX = dA W, dW = dA^T X, dR = dA^T h_prev, dB = sum dA (twice: Wb and Rb), and the final
states of the reverse Scan are d initial_h and d initial_c."""
from onnxforge.runtime.autodiff.ops import _rnn as rnn
from onnxforge.runtime.autodiff.ops._common import attr

OP_TYPE = "LSTM"
GRAD_OUTPUTS = "all"
NON_DIFFERENTIABLE_INPUTS = (4,)


def check(node, info):
    ins = list(node.input) + [""] * (8 - len(node.input))
    if ins[4]:
        return "sequence_lens is not covered (pad sequences instead)"
    if ins[7]:
        return "peepholes (input P) are not covered"
    if attr(node, "layout", 0) != 0:
        return "layout=1 is not covered"
    if attr(node, "clip") is not None:
        return "clip is not covered"
    if attr(node, "input_forget", 0):
        return "input_forget=1 is not covered"
    acts = attr(node, "activations")
    if acts is not None and [a.lower() for a in acts] not in (
            ["sigmoid", "tanh", "tanh"], ["sigmoid", "tanh", "tanh"] * 2):
        return f"activations {acts} are not covered (only the default Sigmoid, Tanh, Tanh)"
    return None


def _direction(ctx, node, d, reverse, dy, dyh, dyc, need):
    ins = list(node.input) + [""] * (8 - len(node.input))
    x, w, r, b, _, h0, c0 = ins[:7]
    y = node.output[0] if len(node.output) > 0 else ""
    H = attr(node, "hidden_size")
    elem = ctx.elem(x)
    dt = ctx.np_dtype(x)
    di = ctx.ints([d])
    sel = lambda t: rnn.select(ctx, t, d)  # noqa: E731
    wd, rd = sel(w), sel(r)                                    # [4H, I], [4H, H]
    xs = rnn.reverse(ctx, x) if reverse else x                 # processing order [T, N, I]
    # h_prev for every step: h0, then Y (this direction, processing order) without its last step
    if not y:
        y = ctx.ensure_output(node, 0, "lstm_y")
    _, h_prev, steps_m1 = rnn.previous_states(ctx, x, y, d, reverse, h0, H)
    # the gates of every step as one Gemm: [x_t, h_{t-1}] [W, R]^T + Wb + Rb over all T*N rows
    # (one pass over [T*N, 4H] instead of two MatMuls and two Adds)
    xh = ctx.op("Concat", [xs, h_prev], axis=2)
    width = ctx.op("Concat", [ctx.ints([-1]), ctx.op("Add", [ctx.shape(x, 2, 3), ctx.ints([H])])], axis=0)
    gemm_in = [ctx.op("Reshape", [xh, width]), ctx.op("Concat", [wd, rd], axis=1)]
    if b:
        wb, rb = ctx.op("Split", [sel(b), ctx.ints([4 * H, 4 * H])], 2, axis=0)
        gemm_in.append(ctx.op("Add", [wb, rb]))
    gates = ctx.op("Reshape", [ctx.op("Gemm", gemm_in, transB=1),
                               ctx.op("Concat", [ctx.shape(x, 0, 2), ctx.ints([4 * H])], axis=0)])
    sig3 = ctx.op("Sigmoid", [ctx.op("Slice", [gates, ctx.ints([0]), ctx.ints([3 * H]), ctx.ints([2])])])
    g = ctx.op("Tanh", [ctx.op("Slice", [gates, ctx.ints([3 * H]), ctx.ints([4 * H]), ctx.ints([2])])])
    i, o, f = ctx.op("Split", [sig3, ctx.ints([H] * 3)], 3, axis=2)
    ig = ctx.op("Mul", [i, g])
    # cell states: c_t = f_t * c_{t-1} + i_t g_t, a forward Scan
    c_init = sel(c0) if c0 else ctx.op("Squeeze", [ctx.op("ConstantOfShape", [ctx.op(
        "Concat", [ctx.ints([1]), ctx.shape(x, 1, 2), ctx.ints([H])], axis=0)], value=rnn.zeros_value(dt)),
        ctx.ints([0])])
    names = {k: ctx.fresh(f"lstm_c_{k}") for k in ("c_in", "f_t", "ig_t", "c_out", "c_scan")}

    def c_body():
        ctx.nodes.append(rnn.node(ctx, "Add", [ctx.op("Mul", [names["f_t"], names["c_in"]]), names["ig_t"]],
                                  [names["c_out"]]))
        ctx.nodes.append(rnn.node(ctx, "Identity", [names["c_out"]], [names["c_scan"]]))

    body = ctx.subgraph("lstm_cells", [(names["c_in"], elem, 2), (names["f_t"], elem, 2), (names["ig_t"], elem, 2)],
                        [(names["c_out"], elem, 2), (names["c_scan"], elem, 3 - 1)], c_body)
    _, c_all = ctx.op("Scan", [c_init, f, ig], 2, body=body, num_scan_inputs=2)
    tc = ctx.op("Tanh", [c_all])
    c_prev = ctx.op("Concat", [ctx.op("Unsqueeze", [c_init, ctx.ints([0])]),
                               ctx.op("Slice", [c_all, ctx.ints([0]), steps_m1, ctx.ints([0])])], axis=0)
    # incoming gradients, processing order; missing ones are zeros
    zeros_seq = None
    if dy is not None:
        dyd = ctx.op("Squeeze", [ctx.op("Gather", [dy, di], axis=1), ctx.ints([1])])
        dyd = rnn.reverse(ctx, dyd) if reverse else dyd
    else:
        zeros_seq = dyd = ctx.op("ConstantOfShape", [ctx.shape(tc)], value=rnn.zeros_value(dt))
    zeros_nh = None

    def state(t):
        nonlocal zeros_nh
        if t is not None:
            return sel(t)
        if zeros_nh is None:
            zeros_nh = ctx.op("ConstantOfShape", [ctx.shape(c_init)], value=rnn.zeros_value(dt))
        return zeros_nh
    _ = zeros_seq
    dh_T, dc_T = state(dyh), state(dyc)
    # the backward Scan: states (dh_next, dc_next). Everything that does not depend on them is
    # computed before, for all steps at once: the gates' derivative factors P = [i'(σ) g, o'(σ) tanh c,
    # f'(σ) c_prev, i (1 - g^2)] and Pc = o (1 - tanh^2 c). The Scan reads dy, P, Pc and f a step
    # at a time, last step first (onnx.reference's Scan has no reverse direction, so each is
    # reversed once with a Slice and dA once afterwards); in the body dh = dy + dh_next,
    # dc = dc_next + dh Pc, dA = [dc, dh, dc, dc] * P, dc_out = dc f, dh_out = dA R: seven nodes
    # a step instead of twenty-five, and no per-step Split of a packed input (measured alternating
    # in one process, one thread: the T20 h64 batch-64 step 1.0x with one packed input split in
    # the body, see docs/notes/training-speed.md).
    one = ctx.scalar(1.0, x)
    sig_d = ctx.op("Mul", [sig3, ctx.op("Sub", [one, sig3])])                      # σ' of i, o, f
    p_iof = ctx.op("Mul", [sig_d, ctx.op("Concat", [g, tc, c_prev], axis=2)])
    p_g = ctx.op("Mul", [i, ctx.op("Sub", [one, ctx.op("Mul", [g, g])])])
    p_all = ctx.op("Concat", [p_iof, p_g], axis=2)
    p_c = ctx.op("Mul", [o, ctx.op("Sub", [one, ctx.op("Mul", [tc, tc])])])
    scanned = [rnn.reverse(ctx, t) for t in (dyd, p_all, p_c, f)]
    n = {k: ctx.fresh(f"lstm_b_{k}") for k in ("dh", "dc", "dy", "p", "pc", "f", "dh_out", "dc_out", "da")}

    def b_body():
        dh = ctx.op("Add", [n["dy"], n["dh"]])
        dc = ctx.op("Add", [n["dc"], ctx.op("Mul", [dh, n["pc"]])])
        ctx.nodes.append(rnn.node(ctx, "Mul", [ctx.op("Concat", [dc, dh, dc, dc], axis=-1), n["p"]], [n["da"]]))
        ctx.nodes.append(rnn.node(ctx, "Mul", [dc, n["f"]], [n["dc_out"]]))
        ctx.nodes.append(rnn.node(ctx, "MatMul", [n["da"], rd], [n["dh_out"]]))

    body = ctx.subgraph("lstm_backward", [(n[k], elem, 2) for k in ("dh", "dc", "dy", "p", "pc", "f")],
                        [(n[k], elem, 2) for k in ("dh_out", "dc_out", "da")], b_body)
    dh0, dc0, da = ctx.op("Scan", [dh_T, dc_T, *scanned], 3, body=body, num_scan_inputs=4)
    da = rnn.reverse(ctx, da)                                     # processing order [T, N, 4H]
    res = {}
    if need[0]:
        dx = ctx.op("MatMul", [da, wd])
        res["x"] = rnn.reverse(ctx, dx) if reverse else dx
    four = ctx.ints([-1, 4 * H])
    daf = ctx.op("Reshape", [da, four]) if (need[1] or need[2]) else None
    if need[1]:
        res["w"] = ctx.op("Gemm", [daf, ctx.op("Reshape", [xs, ctx.op("Concat", [ctx.ints([-1]), ctx.shape(x, 2, 3)],
                                                                            axis=0)])], transA=1)
    if need[2]:
        res["r"] = ctx.op("Gemm", [daf, ctx.op("Reshape", [h_prev, ctx.ints([-1, H])])], transA=1)
    if len(need) > 3 and need[3]:
        db = ctx.op("ReduceSum", [da, ctx.ints([0, 1])], keepdims=0)
        res["b"] = ctx.op("Concat", [db, db], axis=0)
    res["h0"], res["c0"] = dh0, dc0
    return res


def vjp(ctx, node, dys, need):
    dirs = rnn.directions(node, attr)
    dys = list(dys) + [None] * (3 - len(dys))
    need = list(need) + [False] * (8 - len(need))
    per = [_direction(ctx, node, d, rev, dys[0], dys[1], dys[2], need) for d, rev in enumerate(dirs)]
    out = [None] * len(node.input)
    if need[0]:
        out[0] = ctx.like(ctx.sum([p["x"] for p in per]), node.input[0])
    for idx, key in ((1, "w"), (2, "r"), (3, "b")):
        if need[idx]:
            out[idx] = ctx.like(rnn.stack_directions(ctx, per, key), node.input[idx])
    for idx, key in ((5, "h0"), (6, "c0")):
        if idx < len(node.input) and need[idx]:
            out[idx] = ctx.like(rnn.stack_directions(ctx, per, key), node.input[idx])
    return out
