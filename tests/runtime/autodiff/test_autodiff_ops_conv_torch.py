"""Conv, ConvTranspose, pooling and normalisation rules against PyTorch autograd."""

from __future__ import annotations

import numpy as np
import pytest
import torch.nn.functional as F

from _autodiff_torch import check_op

pytestmark = pytest.mark.torch
R = np.random.default_rng(1)


def f32(*shape):
    return R.uniform(-1, 1, shape).astype(np.float32)


CASES = []


def case(id_, op, inputs, fn, attrs, **kw):
    CASES.append(pytest.param(op, inputs, fn, attrs, kw, id=id_))


def conv_ref(strides, pads, dilations, group):
    def f(x, w, b=None):
        n = x.dim() - 2
        if n == 2:
            x = F.pad(x, (pads[1], pads[3], pads[0], pads[2]))
            return F.conv2d(x, w, b, strides, 0, dilations, group)
        x = F.pad(x, (pads[0], pads[1]))
        return F.conv1d(x, w, b, strides, 0, dilations, group)
    return f


for sid, (xs, ws, st, pd, dl, gr) in {
    "plain": ((2, 3, 6, 6), (4, 3, 3, 3), [1, 1], [0, 0, 0, 0], [1, 1], 1),
    "same-pad": ((2, 3, 5, 5), (4, 3, 3, 3), [1, 1], [1, 1, 1, 1], [1, 1], 1),
    "asym-pad": ((2, 2, 5, 6), (3, 2, 2, 3), [1, 1], [0, 1, 1, 2], [1, 1], 1),
    "stride2-leftover": ((2, 3, 7, 8), (4, 3, 3, 3), [2, 2], [1, 0, 1, 0], [1, 1], 1),
    "stride3-dil2": ((1, 2, 11, 10), (3, 2, 3, 2), [3, 2], [1, 1, 0, 2], [2, 3], 1),
    "groups2": ((2, 4, 6, 6), (6, 2, 3, 3), [1, 2], [1, 1, 1, 1], [1, 1], 2),
    "depthwise": ((2, 3, 5, 5), (3, 1, 3, 3), [1, 1], [1, 1, 1, 1], [1, 1], 3),
    "conv1d": ((2, 3, 9), (4, 3, 3), [2], [1, 2], [2], 1),
    # the shape-chosen formulations (autodiff/ops/_conv_grad.py): dX as the flipped Conv (grouped,
    # 1x1, and dense from 256 output positions), depthwise dW as per-tap multiply-and-sum
    "dense-16x16-flipped": ((1, 2, 16, 17), (3, 2, 3, 3), [1, 1], [1, 0, 2, 1], [1, 1], 1),
    "pointwise": ((2, 5, 3, 4), (6, 5, 1, 1), [1, 1], [0, 0, 0, 0], [1, 1], 1),
    "grouped-dil": ((2, 6, 7, 6), (9, 2, 3, 3), [1, 1], [2, 1, 2, 2], [2, 1], 3),
    "depthwise-dil-asym": ((2, 4, 7, 6), (4, 1, 3, 3), [1, 1], [2, 0, 1, 2], [2, 1], 4),
    "depthwise-mult2": ((2, 3, 5, 5), (6, 1, 3, 3), [1, 1], [1, 1, 1, 1], [1, 1], 3),
    "depthwise-1d": ((2, 4, 9), (4, 1, 3), [1], [1, 1], [1], 4),
}.items():
    for bias in (True, False):
        ins = {"X": f32(*xs), "W": f32(*ws)}
        if bias:
            ins["B"] = f32(ws[0])
        case(f"conv-{sid}-{'b' if bias else 'nob'}", "Conv", ins, conv_ref(st, pd, dl, gr),
             dict(strides=st, pads=pd, dilations=dl, group=gr))

for auto in ("SAME_UPPER", "SAME_LOWER", "VALID"):
    for st in ([1, 1], [2, 2]):
        xs, k = (2, 2, 7, 6), 4 if auto != "VALID" else 3
        # explicit pads equal to what auto_pad means, for the PyTorch twin
        pads = [0, 0, 0, 0]
        if auto != "VALID":
            for i, d in enumerate(xs[2:]):
                out = -(-d // st[i])
                total = max((out - 1) * st[i] + k - d, 0)
                small, big = total // 2, total - total // 2
                pads[i], pads[i + 2] = (small, big) if auto == "SAME_UPPER" else (big, small)
        case(f"conv-auto-{auto}-s{st[0]}", "Conv", {"X": f32(*xs), "W": f32(3, 2, k, k)},
             conv_ref(st, pads, [1, 1], 1), dict(auto_pad=auto, strides=st, kernel_shape=[k, k]))


def convt_ref(strides, pads, out_pad, dil, group):
    def f(x, w, b=None):
        return F.conv_transpose2d(x, w, b, strides, pads, out_pad, group, dil)
    return f


for sid, (xs, ws, st, p, op_, dl, gr) in {
    "plain": ((2, 3, 4, 4), (3, 2, 3, 3), [1, 1], [0, 0], [0, 0], [1, 1], 1),
    "stride2-pad": ((2, 3, 4, 5), (3, 4, 3, 3), [2, 2], [1, 1], [1, 0], [1, 1], 1),
    "dil-groups": ((1, 4, 4, 4), (4, 2, 2, 3), [2, 1], [0, 1], [1, 0], [2, 2], 2),
    # dW by the shape-chosen forms (autodiff/ops/_conv_grad.py): per-tap patches (8+ channels),
    # grouped per-tap patches at stride 1, depthwise taps
    "per-tap-s2-outpad": ((2, 3, 4, 5), (3, 8, 3, 3), [2, 2], [1, 1], [1, 0], [1, 1], 1),
    "per-tap-grouped": ((2, 4, 4, 4), (4, 8, 3, 3), [1, 1], [1, 1], [0, 0], [1, 1], 2),
    "depthwise-taps": ((2, 4, 5, 4), (4, 1, 3, 3), [1, 1], [1, 0], [0, 0], [1, 1], 4),
}.items():
    ins = {"X": f32(*xs), "W": f32(*ws), "B": f32(ws[1] * gr)}
    case(f"convt-{sid}", "ConvTranspose", ins, convt_ref(st, p, op_, dl, gr),
         dict(strides=st, pads=p + p, output_padding=op_, dilations=dl, group=gr),
         # onnx.reference cannot run a grouped ConvTranspose forward node (it slices W wrongly)
         both=gr == 1)

for sid, (xs, k, st, p, dl, cm) in {
    "2x2": ((2, 3, 6, 6), [2, 2], [2, 2], [0, 0], [1, 1], 0),
    "3x3-s2-p1": ((2, 2, 7, 7), [3, 3], [2, 2], [1, 1], [1, 1], 0),
    "overlap": ((1, 2, 5, 6), [3, 2], [1, 1], [0, 0], [1, 1], 0),
    "ceil": ((1, 2, 7, 7), [2, 2], [2, 2], [0, 0], [1, 1], 1),
    "dilated": ((1, 2, 8, 8), [2, 2], [1, 1], [1, 1], [2, 2], 0),
}.items():
    case(f"maxpool-{sid}", "MaxPool", {"X": f32(*xs)},
         lambda x, k=k, st=st, p=p, dl=dl, cm=cm: F.max_pool2d(x, k, st, p, dl, bool(cm)),
         dict(kernel_shape=k, strides=st, pads=p + p, dilations=dl, ceil_mode=cm))

def ties(*shape, values=(0.0, 0.25, 0.5)):
    """Values drawn from a few levels (equal maxima in most windows), and windows all zero (as
    after a ReLU)."""
    x = R.choice(np.array(values, np.float32), shape)
    x[..., :2] = 0.0
    return x


# tiling pools (window == stride): the gradient without Indices; ties go to the first maximum
for sid, (x, k) in {
    "tile-relu-zeros": (np.maximum(f32(2, 3, 8, 8), 0), [2, 2]),
    "tile-ties": (ties(2, 3, 8, 8), [2, 2]),
    "tile-ties-4x4": (ties(3, 4, 4, 4), [2, 2]),
    "tile-3x2": (ties(2, 2, 6, 8), [3, 2]),
    "tile-2x1": (ties(2, 2, 4, 3), [2, 1]),
    "tile-over-cap": (ties(1, 2, 16, 16), [2, 2]),  # 64 windows: the Indices form
}.items():
    case(f"maxpool-{sid}", "MaxPool", {"X": x}, lambda x, k=k: F.max_pool2d(x, k, k), dict(kernel_shape=k, strides=k))
case("maxpool-tile-1d", "MaxPool", {"X": ties(2, 3, 12)}, lambda x: F.max_pool1d(x, 4, 4),
     dict(kernel_shape=[4], strides=[4]))
case("maxpool-tile-3d", "MaxPool", {"X": ties(1, 2, 4, 2, 4)}, lambda x: F.max_pool3d(x, 2, 2),
     dict(kernel_shape=[2, 2, 2], strides=[2, 2, 2]))


for sid, (xs, k, st, p, cip) in {
    "2x2": ((2, 3, 6, 6), [2, 2], [2, 2], [0, 0], 0),
    "3x3-pad-excl": ((2, 2, 7, 7), [3, 3], [2, 2], [1, 1], 0),
    "3x3-pad-incl": ((2, 2, 7, 6), [3, 3], [2, 1], [1, 1], 1),
    "leftover": ((1, 2, 8, 7), [3, 2], [2, 2], [0, 0], 0),
}.items():
    case(f"avgpool-{sid}", "AveragePool", {"X": f32(*xs)},
         lambda x, k=k, st=st, p=p, cip=cip: F.avg_pool2d(x, k, st, p, count_include_pad=bool(cip)),
         dict(kernel_shape=k, strides=st, pads=p + p, count_include_pad=cip))
case("global-avgpool", "GlobalAveragePool", {"X": f32(2, 3, 4, 5)}, lambda x: x.mean((2, 3), keepdim=True), {})

case("bn-inference", "BatchNormalization",
     {"X": f32(4, 3, 2, 2), "s": f32(3), "b": f32(3), "m": f32(3), "v": R.uniform(0.5, 2, 3).astype(np.float32)},
     lambda x, s, b, m, v: F.batch_norm(x, m, v, s, b, False, 0.1, 1e-5), dict(epsilon=1e-5), consts=["m", "v"])
case("bn-inference-2d", "BatchNormalization",
     {"X": f32(5, 3), "s": f32(3), "b": f32(3), "m": f32(3), "v": R.uniform(0.5, 2, 3).astype(np.float32)},
     lambda x, s, b, m, v: F.batch_norm(x, m, v, s, b, False, 0.1, 1e-3), dict(epsilon=1e-3), consts=["m", "v"])
case("bn-training", "BatchNormalization",
     {"X": f32(4, 3, 3, 2), "s": f32(3), "b": f32(3), "m": f32(3), "v": R.uniform(0.5, 2, 3).astype(np.float32)},
     lambda x, s, b, m, v: F.batch_norm(x, None, None, s, b, True, 0.1, 1e-5), dict(epsilon=1e-5, training_mode=1),
     consts=["m", "v"], n_out=3)
for axis, shape in ((-1, (3, 4, 5)), (1, (2, 3, 4)), (0, (3, 4))):
    norm = shape[axis:] if axis >= 0 else shape[axis:]
    case(f"layernorm-axis{axis}", "LayerNormalization", {"X": f32(*shape), "s": f32(*norm), "b": f32(*norm)},
         lambda x, s, b, norm=norm: F.layer_norm(x, norm, s, b, 1e-5), dict(axis=axis, epsilon=1e-5))
case("layernorm-noB", "LayerNormalization", {"X": f32(3, 4), "s": f32(4)},
     lambda x, s: F.layer_norm(x, (4,), s, None, 1e-5), dict(axis=-1))


@pytest.mark.parametrize("dynamic", [False, True], ids=["static", "dynbatch"])
@pytest.mark.parametrize("op,inputs,fn,attrs,kw", CASES)
def test_rule_matches_torch(op, inputs, fn, attrs, kw, dynamic):
    if dynamic:
        # only the batch dim is dynamic (spatial dims stay known, as in real models)
        from _autodiff_check import single_op_model  # noqa: F401
        kw = dict(kw, dynamic="batch")
    check_op(op, inputs, fn, attrs=attrs, **kw)


@pytest.mark.parametrize("shape,k,tiled", [((2, 3, 8, 8), [2, 2], True), ((2, 3, 12), [4], True),
                                           ((1, 2, 16, 16), [2, 2], False), ((1, 2, 7, 7), [2, 2], False)])
def test_tiling_maxpool_needs_no_indices(shape, k, tiled):
    """Tiling pools of at most 16 windows: the forward MaxPool keeps one output and no
    ScatterElements is built; others (64 windows, a leftover row) take the Indices form."""
    x = ties(*shape)
    g = check_op("MaxPool", {"X": x}, lambda t: (F.max_pool1d if len(shape) == 3 else F.max_pool2d)(t, k, k),
                 attrs=dict(kernel_shape=k, strides=k))
    pool = next(n for n in g.graph.node if n.op_type == "MaxPool" and "X" in n.input)
    ops = {n.op_type for n in g.graph.node}
    assert (len(pool.output) == 1 and "ScatterElements" not in ops) == tiled
