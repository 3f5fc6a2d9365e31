"""Each Conv gradient formulation of runtime/autodiff/ops/_conv_grad.py, forced on cases it covers
(whatever the rule would choose for their sizes), against PyTorch autograd on the same values:
group 1, grouped, depthwise (multiplier 1 and 2), strides, dilations, asymmetric pads, 1x1,
1-D and 3-D; and the rule's choices on shapes where it takes them."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F
from onnx import TensorProto, helper

from onnxforge.runtime.autodiff._emitter import Emitter
from onnxforge.runtime.autodiff.ops import _conv_grad as fast
from onnxforge.runtime.ort.distribution import ort

pytestmark = pytest.mark.torch
R = np.random.default_rng(7)

# id: (x shape, w shape, strides, pads [begin..., end...], dilations, group)
CASES = {
    "dense": ((2, 3, 6, 7), (4, 3, 3, 3), [1, 1], [1, 1, 1, 1], [1, 1], 1),
    "dense-asym-dil": ((2, 3, 9, 8), (4, 3, 3, 2), [1, 1], [2, 0, 1, 1], [2, 3], 1),
    "dense-valid": ((1, 2, 6, 6), (3, 2, 3, 3), [1, 1], [0, 0, 0, 0], [1, 1], 1),
    "pointwise": ((2, 5, 4, 3), (6, 5, 1, 1), [1, 1], [0, 0, 0, 0], [1, 1], 1),
    "grouped": ((2, 6, 5, 5), (9, 2, 3, 3), [1, 1], [1, 1, 1, 1], [1, 1], 3),
    "grouped-dil-asym": ((1, 4, 8, 7), (4, 2, 3, 3), [1, 1], [0, 2, 2, 1], [2, 1], 2),
    "depthwise": ((2, 4, 6, 6), (4, 1, 3, 3), [1, 1], [1, 1, 1, 1], [1, 1], 4),
    "depthwise-s2": ((2, 3, 7, 8), (3, 1, 3, 3), [2, 2], [1, 1, 1, 0], [1, 1], 3),
    "depthwise-5x5-dil": ((1, 3, 10, 9), (3, 1, 5, 5), [1, 1], [4, 3, 4, 4], [2, 2], 3),
    "depthwise-mult2": ((2, 3, 5, 5), (6, 1, 3, 3), [1, 1], [1, 1, 1, 1], [1, 1], 3),
    "depthwise-1d": ((2, 4, 9), (4, 1, 3), [1], [1, 1], [1], 4),
    "dense-1d-s2": ((2, 3, 9), (2, 3, 3), [2], [1, 0], [1], 1),
    "depthwise-3d": ((1, 2, 4, 5, 4), (2, 1, 3, 3, 3), [1, 1, 1], [1, 1, 1, 1, 1, 1], [1, 1, 1], 2),
    "grouped-3d-s2": ((1, 4, 5, 5, 4), (4, 2, 3, 3, 3), [2, 1, 2], [1, 1, 0, 1, 1, 1], [1, 1, 1], 2),
}


def torch_grads(xs, ws, strides, pads, dil, group):
    x = torch.tensor(R.uniform(-1, 1, xs), dtype=torch.float64, requires_grad=True)
    w = torch.tensor(R.uniform(-1, 1, ws), dtype=torch.float64, requires_grad=True)
    n = len(strides)
    xpad = F.pad(x, [p for i in reversed(range(n)) for p in (pads[i], pads[n + i])])
    y = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[n](xpad, w, None, strides, 0, dil, group)
    dy = torch.tensor(R.standard_normal(tuple(y.shape)))
    y.backward(dy)
    f = np.float32
    return x.detach().numpy().astype(f), w.detach().numpy().astype(f), dy.numpy().astype(f), \
        x.grad.numpy(), w.grad.numpy()


def run(build, feeds, want):
    ctx = Emitter({k: (TensorProto.FLOAT, list(v.shape)) for k, v in feeds.items()}, 17, {})
    out = build(ctx)
    assert out is not None, "the formulation refused a case it covers"
    g = helper.make_graph(ctx.nodes + [helper.make_node("Identity", [out], ["out"])], "t",
                          [helper.make_tensor_value_info(k, TensorProto.FLOAT, list(v.shape)) for k, v in feeds.items()],
                          [helper.make_tensor_value_info("out", TensorProto.FLOAT, list(want.shape))], ctx.initializers)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.checker.check_model(m, full_check=True)
    sess = ort().InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    got = sess.run(None, feeds)[0]
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * max(1.0, np.abs(want).max()))


@pytest.mark.parametrize("cid", [c for c, v in CASES.items() if all(s == 1 for s in v[2])])
def test_flipped_input_grad(cid):
    xs, ws, st, pads, dil, group = CASES[cid]
    x, w, dy, dx, _ = torch_grads(xs, ws, st, pads, dil, group)
    k = list(ws[2:])
    run(lambda ctx: fast.flipped_input_grad(ctx, "dy", "w", group, k, st, dil, pads), {"dy": dy, "w": w}, dx)


@pytest.mark.parametrize("cid", [c for c, v in CASES.items() if v[1][1] == 1 and v[1][0] == v[5]])
def test_depthwise_weight_grad(cid):
    xs, ws, st, pads, dil, group = CASES[cid]
    x, w, dy, _, dw = torch_grads(xs, ws, st, pads, dil, group)
    run(lambda ctx: fast.depthwise_weight_grad(ctx, "x", "dy", group, list(ws[2:]), st, dil, pads, list(ws)),
              {"x": x, "dy": dy}, dw)


@pytest.mark.parametrize("cid", list(CASES))
@pytest.mark.parametrize("per_tap", [True, False], ids=["matmul-per-tap", "tap-major"])
def test_tap_patch_weight_grad(cid, per_tap):
    xs, ws, st, pads, dil, group = CASES[cid]
    x, w, dy, _, dw = torch_grads(xs, ws, st, pads, dil, group)
    run(lambda ctx: fast.tap_patch_weight_grad(ctx, "x", "dy", group, list(ws[2:]), st, dil, pads, list(ws),
                                               per_tap=per_tap), {"x": x, "dy": dy}, dw)


@pytest.mark.parametrize("cid", [c for c, v in CASES.items() if all(k == 1 for k in v[1][2:])]
                         + ["pointwise-1d", "pointwise-3d"])
def test_pointwise_weight_grad(cid):
    xs, ws, st, pads, dil, group = {"pointwise-1d": ((2, 5, 7), (3, 5, 1), [1], [0, 0], [1], 1),
                                    "pointwise-3d": ((2, 3, 2, 3, 4), (4, 3, 1, 1, 1), [1] * 3, [0] * 6, [1] * 3, 1),
                                    }.get(cid) or CASES[cid]
    x, w, dy, _, dw = torch_grads(xs, ws, st, pads, dil, group)
    run(lambda ctx: fast.pointwise_weight_grad(ctx, "x", "dy", list(ws)), {"x": x, "dy": dy}, dw)


def test_not_covered_is_refused():
    """A formulation answers None (the rule then takes the general one) outside what it covers:
    strides for the flipped Conv, pads beyond the kernel's span, depthwise with a multiplier."""
    ctx = Emitter({"dy": (TensorProto.FLOAT, [1, 4, 3, 3]), "w": (TensorProto.FLOAT, [4, 1, 3, 3]),
                   "x": (TensorProto.FLOAT, [1, 2, 5, 5])}, 17, {})
    assert fast.flipped_input_grad(ctx, "dy", "w", 4, [3, 3], [2, 2], [1, 1], [1] * 4) is None
    assert fast.flipped_input_grad(ctx, "dy", "w", 4, [3, 3], [1, 1], [1, 1], [3, 1, 1, 1]) is None
    assert fast.depthwise_weight_grad(ctx, "x", "dy", 2, [3, 3], [1, 1], [1, 1], [1] * 4, [4, 1, 3, 3]) is None
    assert fast.pointwise_weight_grad(ctx, "x", "dy", [64, 64, 1, 1]) is None  # [N, 64, 64] > the inputs
    assert not ctx.nodes


def _grad_ops(xs, ws, group, strides, pads):
    from onnxforge.runtime.autodiff import gradient_model
    n = len(strides)
    node = helper.make_node("Conv", ["x", "w"], ["y"], group=group, strides=strides, pads=pads, dilations=[1] * n)
    g = helper.make_graph([node], "c", [helper.make_tensor_value_info("x", TensorProto.FLOAT, xs),
                                        helper.make_tensor_value_info("w", TensorProto.FLOAT, ws)],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    m = gradient_model(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), ["x", "w"], "y")
    return [nd.op_type for nd in m.graph.node if nd is not m.graph.node[0]]


@pytest.mark.parametrize("xs,ws,group,strides,flipped,dw", [
    ([8, 16, 8, 8], [16, 1, 3, 3], 16, [1, 1], True, "taps"),        # depthwise, stride 1
    ([8, 16, 8, 8], [16, 1, 3, 3], 16, [2, 2], False, "general"),    # strided: ConvTranspose, Conv over swapped axes
    ([8, 16, 8, 8], [16, 1, 5, 5], 16, [1, 1], True, "general"),     # 5x5 depthwise: the taps lost
    ([8, 16, 8, 8], [32, 4, 3, 3], 4, [1, 1], True, "general"),      # grouped, 4 channels per group
    ([8, 32, 8, 8], [32, 8, 3, 3], 4, [1, 1], True, "per-tap"),      # grouped, 8 channels per group
    ([8, 32, 8, 8], [32, 8, 3, 3], 4, [2, 2], False, "general"),     # grouped, strided
    ([8, 16, 4, 4], [32, 16, 3, 3], 1, [1, 1], False, "per-tap"),    # dense on 4x4: ConvTranspose was faster
    ([8, 16, 16, 16], [32, 16, 3, 3], 1, [2, 2], False, "per-tap"),  # dense, strided
    ([8, 4, 16, 16], [32, 4, 3, 3], 1, [1, 1], True, "general"),     # dense, 4 input channels
    ([8, 16, 4, 4], [32, 16, 1, 1], 1, [1, 1], True, "pointwise"),   # pointwise
    ([8, 64, 2, 2], [64, 64, 1, 1], 1, [1, 1], True, "general"),     # pointwise on 2x2: the products outgrow the inputs
    ([8, 16, 4, 4], [32, 16, 1, 1], 1, [2, 2], False, "general"),    # pointwise, strided
])
def test_rule_takes_the_measured_formulation(xs, ws, group, strides, flipped, dw):
    k = len(ws) - 2
    pads = [(ws[2] - 1) // 2] * (2 * k)
    ops = _grad_ops(xs, ws, group, strides, pads)
    assert ("ConvTranspose" not in ops) == flipped
    taps = ws[2] * ws[3]
    found = ("taps" if "MatMul" not in ops and ops.count("Conv") == int(flipped) and ops.count("ReduceSum") == taps
             else "per-tap" if taps > 1 and ops.count("MatMul") == taps
             else "pointwise" if taps == 1 and ops.count("MatMul") == 1 and "ReduceSum" in ops else "general")
    assert found == dw
