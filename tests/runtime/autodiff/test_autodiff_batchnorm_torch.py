"""Batch normalisation's training form (``batchnorm_training_form``) and its closed-form backward
(the BatchNormalization rule recognising the batch statistics): Y, dX, dscale, dB equal PyTorch's
``F.batch_norm(training=True)`` on the same weights, for BatchNorm1d on [N, C] and [N, C, L], 2d and
3d, with and without affine parameters, static and symbolic batch; the updated running statistics
equal numpy's (ONNX's momentum, biased variance). A look-alike that is not the batch statistics
(an unbiased variance) is differentiated op by op, and is right too."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from onnx import helper, numpy_helper

from _autodiff_check import assert_close, gradients, graph_model, vi
from onnxforge.runtime.autodiff import batchnorm_training_form

pytestmark = pytest.mark.torch
TOL = 2e-5


def _model(shape, affine, dynamic, eps=1e-3, momentum=0.8, opset=17):
    c = shape[1]
    rng = np.random.default_rng(len(shape))
    w = {"scale": rng.uniform(0.5, 1.5, c), "bias": rng.standard_normal(c),
         "mean": rng.standard_normal(c), "var": rng.uniform(0.5, 2.0, c)}
    if not affine:  # as torch exports BatchNorm(affine=False): constant ones and zeros
        w["scale"], w["bias"] = np.ones(c), np.zeros(c)
    w = {k: v.astype(np.float32) for k, v in w.items()}
    dims = ([f"d{i}" for i in range(len(shape))] if dynamic == "all" else ["N", *shape[1:]] if dynamic
            else list(shape))
    node = helper.make_node("BatchNormalization", ["x", "scale", "bias", "mean", "var"], ["y"],
                            epsilon=eps, momentum=momentum)
    inputs = [vi("x", dims)] + ([vi("scale", [c]), vi("bias", [c])] if affine else [])
    inits = [numpy_helper.from_array(v, k) for k, v in w.items() if not affine or k in ("mean", "var")]
    return graph_model([node], inputs, [vi("y", dims)], inits, opset=opset), w


CASES = [((6, 3), True), ((4, 3, 5), True), ((3, 4, 5, 5), True), ((2, 3, 3, 4, 2), True),
         ((6, 3), False), ((3, 4, 5, 5), False)]


@pytest.mark.parametrize("dynamic", [False, True, "all"], ids=["static", "symbolic-batch", "all-symbolic"])
@pytest.mark.parametrize("shape,affine", CASES, ids=[f"{len(s)}d-{'affine' if a else 'plain'}" for s, a in CASES])
def test_training_form_gradients_equal_pytorch(shape, affine, dynamic):
    eps, momentum = 1e-3, 0.8
    model, w = _model(shape, affine, dynamic, eps, momentum)
    form, updates = batchnorm_training_form(model)
    rng = np.random.default_rng(1)
    x = (rng.standard_normal(shape) * 2 + 0.5).astype(np.float32)
    dy = rng.standard_normal(shape).astype(np.float32)
    wrt = ["x", "scale", "bias"] if affine else ["x"]
    feeds = {"x": x, "dY": dy, **({"scale": w["scale"], "bias": w["bias"]} if affine else {})}
    got, outs, g = gradients(form, wrt, "y", feeds, seed="dY", tol=TOL)
    # the closed form ran: its dX is a Mul and a BatchNormalization of d (epsilon 0), no Expand of dmean
    grad_nodes = [n for n in g.graph.node if n.name.startswith("grad/")]
    assert any(n.op_type == "BatchNormalization" for n in grad_nodes)
    assert not any(n.op_type == "Expand" for n in grad_nodes)

    tx = torch.tensor(x, requires_grad=True)
    ts, tb = (torch.tensor(w[k], requires_grad=affine) for k in ("scale", "bias"))
    rm, rv = torch.tensor(w["mean"]), torch.tensor(w["var"])
    ty = F.batch_norm(tx, rm, rv, ts, tb, training=True, momentum=1 - momentum, eps=eps)
    ty.backward(torch.tensor(dy))
    assert_close(outs["y"], ty.detach().numpy(), TOL, what="Y")
    assert_close(got["x"], tx.grad.numpy(), TOL, what="dX")
    if affine:
        assert_close(got["scale"], ts.grad.numpy(), TOL, what="dscale")
        assert_close(got["bias"], tb.grad.numpy(), TOL, what="dB")
    axes = (0, *range(2, len(shape)))
    assert_close(outs[updates["mean"]], momentum * w["mean"] + (1 - momentum) * x.mean(axes), TOL, what="running mean")
    assert_close(outs[updates["var"]], momentum * w["var"] + (1 - momentum) * x.var(axes), TOL, what="running var")
    assert_close(outs[updates["mean"]], rm.numpy(), TOL, what="running mean vs PyTorch")


def test_training_form_at_opset_15_and_18():
    """Reductions take axes as an attribute before opset 18 and as an input from 18 on."""
    for opset in (15, 18):
        model, w = _model((3, 4, 5, 5), True, True, opset=opset)
        form, _ = batchnorm_training_form(model)
        x = np.random.default_rng(2).standard_normal((3, 4, 5, 5)).astype(np.float32)
        dy = np.random.default_rng(3).standard_normal((3, 4, 5, 5)).astype(np.float32)
        got, _, g = gradients(form, ["x", "scale"], "y", {"x": x, "dY": dy, "scale": w["scale"], "bias": w["bias"]},
                              seed="dY", tol=TOL)
        assert any(n.op_type == "BatchNormalization" and n.name.startswith("grad/") for n in g.graph.node)
        tx = torch.tensor(x, requires_grad=True)
        ts = torch.tensor(w["scale"], requires_grad=True)
        F.batch_norm(tx, None, None, ts, torch.tensor(w["bias"]), training=True, eps=1e-3).backward(torch.tensor(dy))
        assert_close(got["x"], tx.grad.numpy(), TOL, what=f"dX at opset {opset}")
        assert_close(got["scale"], ts.grad.numpy(), TOL, what=f"dscale at opset {opset}")


def test_a_look_alike_that_is_not_the_batch_variance_is_differentiated_op_by_op():
    """var = ReduceSumSquare(X - mean) / (M - 1) (unbiased) is not the pattern: the rule leaves the
    statistics to their own rules, and the gradient is still PyTorch's."""
    shape = (3, 4, 5)
    m = shape[0] * shape[2]
    nodes = [helper.make_node("ReduceMean", ["x", "axes"], ["mu"], keepdims=0),
             helper.make_node("Unsqueeze", ["mu", "one"], ["mu1"]),
             helper.make_node("Sub", ["x", "mu1"], ["d"]),
             helper.make_node("ReduceSumSquare", ["d", "axes"], ["ss"], keepdims=0),
             helper.make_node("Mul", ["ss", "k"], ["v"]),
             helper.make_node("BatchNormalization", ["x", "s", "b", "mu", "v"], ["y"], epsilon=1e-3)]
    inits = [numpy_helper.from_array(np.array([0, 2], np.int64), "axes"), numpy_helper.from_array(np.array([1], np.int64), "one"),
             numpy_helper.from_array(np.array([1.0 / (m - 1)], np.float32), "k")]
    model = graph_model(nodes, [vi("x", list(shape)), vi("s", [4]), vi("b", [4])], [vi("y", list(shape))], inits, opset=18)
    rng = np.random.default_rng(4)
    x, dy = (rng.standard_normal(shape).astype(np.float32) for _ in range(2))
    s, b = rng.uniform(0.5, 1.5, 4).astype(np.float32), rng.standard_normal(4).astype(np.float32)
    got, _, g = gradients(model, ["x", "s"], "y", {"x": x, "dY": dy, "s": s, "b": b}, seed="dY", tol=TOL)
    assert not any(n.op_type == "BatchNormalization" and n.name.startswith("grad/") for n in g.graph.node)
    tx, ts = torch.tensor(x, requires_grad=True), torch.tensor(s, requires_grad=True)
    mu = tx.mean((0, 2), keepdim=True)
    var = ((tx - mu) ** 2).sum((0, 2), keepdim=True) / (m - 1)
    ty = (tx - mu) / torch.sqrt(var + 1e-3) * ts[None, :, None] + torch.tensor(b)[None, :, None]
    ty.backward(torch.tensor(dy))
    assert_close(got["x"], tx.grad.numpy(), TOL, what="dX")
    assert_close(got["s"], ts.grad.numpy(), TOL, what="ds")
