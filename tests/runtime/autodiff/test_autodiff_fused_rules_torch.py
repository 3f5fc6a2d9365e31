"""Rules that differentiate a pattern as a whole, against PyTorch on the same values: SiLU written
``X * Sigmoid(X)`` (either operand order, the sigmoid also used elsewhere), and Clip with bounds
known at build time (ReLU6; bounds out of order, where all of Clip is its max); GlobalAveragePool's
backward as one broadcasting Mul; HardSwish's without Where."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from onnx import helper, numpy_helper

from _autodiff_check import assert_close, gradients, graph_model, vi

pytestmark = pytest.mark.torch
TOL = 1e-5
SHAPE = [2, 3, 4, 4]


def _run(nodes, fn, inits=(), dynamic=False, x=None, dtype=np.float32):
    dims = ["N", *SHAPE[1:]] if dynamic else SHAPE
    elem = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    model = graph_model(nodes, [vi("x", dims, elem)], [vi("y", dims, elem)], list(inits))
    rng = np.random.default_rng(3)
    x = (rng.standard_normal(SHAPE) * 4 if x is None else x).astype(dtype)
    dy = rng.standard_normal(SHAPE).astype(dtype)
    # ONNX Runtime has no float64 HardSigmoid/HardSwish kernel: onnx.reference runs those alone
    got, out, g = gradients(model, ["x"], "y", {"x": x, "dY": dy}, seed="dY", reference_only=dtype == np.float64)
    tx = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    ty = fn(tx)
    ty.backward(torch.tensor(dy, dtype=torch.float64))
    assert_close(out["y"], ty.detach().numpy(), TOL, what="forward")
    assert_close(got["x"], tx.grad.numpy(), TOL, what="dX")
    return [n.op_type for n in g.graph.node if n.name.startswith("grad/")]


@pytest.mark.parametrize("dynamic", [False, True], ids=["static", "symbolic-batch"])
@pytest.mark.parametrize("order", ["x*s", "s*x"])
def test_silu_as_a_whole(order, dynamic):
    inputs = ["x", "s"] if order == "x*s" else ["s", "x"]
    ops = _run([helper.make_node("Sigmoid", ["x"], ["s"]), helper.make_node("Mul", inputs, ["y"])],
               torch.nn.functional.silu, dynamic=dynamic)
    assert "Sigmoid" not in ops and ops.count("Mul") == 2 and "Sum" not in ops  # the four-pass form


def test_silu_whose_sigmoid_is_also_used_elsewhere():
    """Y = X * Sigmoid(X) + 2 * Sigmoid(X): the Sigmoid's other use still reaches X."""
    nodes = [helper.make_node("Sigmoid", ["x"], ["s"]), helper.make_node("Mul", ["x", "s"], ["p"]),
             helper.make_node("Mul", ["s", "two"], ["q"]), helper.make_node("Add", ["p", "q"], ["y"])]
    two = helper.make_node("Constant", [], ["two"], value=numpy_helper.from_array(np.array(2.0, np.float32)))
    _run([two, *nodes], lambda x: x * torch.sigmoid(x) + 2 * torch.sigmoid(x))


def test_a_product_with_a_sigmoid_of_something_else_is_a_plain_product():
    nodes = [helper.make_node("Neg", ["x"], ["n"]), helper.make_node("Sigmoid", ["n"], ["s"]),
             helper.make_node("Mul", ["x", "s"], ["y"])]
    ops = _run(nodes, lambda x: x * torch.sigmoid(-x))
    assert "Sub" in ops  # Sigmoid's own rule ran


def _clip(lo, hi):
    nodes, names = [], []
    for name, v in (("lo", lo), ("hi", hi)):
        if v is None:
            names.append("")
            continue
        nodes.append(helper.make_node("Constant", [], [name], value=numpy_helper.from_array(np.array(v, np.float32))))
        names.append(name)
    return [*nodes, helper.make_node("Clip", ["x", *names], ["y"])]


@pytest.mark.parametrize("dynamic", [False, True], ids=["static", "symbolic-batch"])
def test_relu6_with_constant_bounds(dynamic):
    x = np.random.default_rng(5).standard_normal(SHAPE).astype(np.float32) * 5
    x.flat[:4] = [0.0, 6.0, -0.0, 7.0]  # on and past the bounds: clamp passes the boundary
    ops = _run(_clip(0.0, 6.0), lambda t: torch.clamp(t, 0.0, 6.0), dynamic=dynamic, x=x)
    assert "Equal" in ops and "And" not in ops


def test_clip_with_one_constant_bound():
    ops = _run(_clip(None, 1.5), lambda t: torch.clamp(t, max=1.5))
    assert "Equal" in ops


def test_clip_with_constant_bounds_out_of_order_is_all_max():
    """min > max: Y = max everywhere, dX = 0 (torch.clamp's backward too), also where X == max."""
    x = np.random.default_rng(6).standard_normal(SHAPE).astype(np.float32)
    x.flat[:2] = [-1.0, -1.0]
    ops = _run(_clip(1.0, -1.0), lambda t: torch.clamp(t, 1.0, -1.0), x=x)
    assert "Equal" not in ops


@pytest.mark.parametrize("dynamic", [False, True], ids=["static", "symbolic-batch"])
def test_global_average_pool_broadcasts_by_one_mul(dynamic):
    """dX = dY * (a [1, 1, H, W] constant of 1/(H*W)) when the spatial dims are known."""
    dims = ["N", *SHAPE[1:]] if dynamic else SHAPE
    model = graph_model([helper.make_node("GlobalAveragePool", ["x"], ["y"])], [vi("x", dims)],
                        [vi("y", [dims[0], SHAPE[1], 1, 1])])
    rng = np.random.default_rng(7)
    x, dy = rng.standard_normal(SHAPE).astype(np.float32), rng.standard_normal([*SHAPE[:2], 1, 1]).astype(np.float32)
    got, _, g = gradients(model, ["x"], "y", {"x": x, "dY": dy}, seed="dY")
    tx = torch.tensor(x, requires_grad=True)
    tx.mean((2, 3), keepdim=True).backward(torch.tensor(dy))
    assert_close(got["x"], tx.grad.numpy(), TOL, what="dX")
    assert [n.op_type for n in g.graph.node if n.name.startswith("grad/")] == ["Mul"]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("dynamic", [False, True], ids=["static", "symbolic-batch"])
def test_hard_swish_on_and_around_its_kinks(dynamic, dtype):
    """PyTorch's hardswish_backward, on -3 and 3 too (0 and 1 there): in float32 HardSigmoid(X) +
    (X - Shrink(X, just below 3)) / 6 without Where; in float64 the comparisons."""
    x = np.random.default_rng(8).standard_normal(SHAPE) * 4
    x.flat[:8] = [-3.0, 3.0, -3.0001, 3.0001, 0.0, -2.9999, np.nextafter(np.float32(3), np.float32(0)), 2.9999999]
    ops = _run([helper.make_node("HardSwish", ["x"], ["y"])], torch.nn.functional.hardswish, dynamic=dynamic, x=x,
               dtype=dtype)
    assert ("Where" in ops) == (dtype == np.float64)


@pytest.mark.parametrize("starts,ends,axis", [([2], [5], 1), ([-3], [100], 1), ([1], [3], 3), ([0], [1], 0)],
                         ids=["channels", "negative-start", "width", "batch-axis"])
def test_slice_of_a_known_axis_under_a_symbolic_batch_is_a_pad(starts, ends, axis):
    """ShuffleNet's channel split: the sliced axis' dim is known, the batch is not: dX = Pad(dY).
    Slicing the symbolic batch axis itself keeps the scatter form."""
    shape = [2, 6, 4, 4]
    consts = [numpy_helper.from_array(np.array(v, np.int64), n) for n, v in (("s", starts), ("e", ends), ("a", [axis]))]
    out_dims = list(shape)
    lo, hi = slice(starts[0], ends[0]).indices(shape[axis])[:2]
    out_dims[axis] = hi - lo
    model = graph_model([helper.make_node("Slice", ["x", "s", "e", "a"], ["y"])], [vi("x", ["N", *shape[1:]])],
                        [vi("y", ["N" if axis == 0 else out_dims[0], *out_dims[1:]])], consts)
    rng = np.random.default_rng(9)
    x, dy = rng.standard_normal(shape).astype(np.float32), rng.standard_normal(out_dims).astype(np.float32)
    got, _, g = gradients(model, ["x"], "y", {"x": x, "dY": dy}, seed="dY")
    tx = torch.tensor(x, requires_grad=True)
    tx.narrow(axis, lo, hi - lo).backward(torch.tensor(dy))
    assert_close(got["x"], tx.grad.numpy(), TOL, what="dX")
    ops = [n.op_type for n in g.graph.node if n.name.startswith("grad/")]
    assert ("ScatterElements" in ops) == (axis == 0) and ("Pad" in ops) == (axis != 0)
