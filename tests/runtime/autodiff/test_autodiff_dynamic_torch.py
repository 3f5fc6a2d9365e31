"""PyTorch on the same weights: models exported with symbolic (dynamic) spatial dims (strided
convolutions and pools, a U-Net upsampling to its skip connection's run-time size, a ViT-style
patch embedding with a class token), and the control-flow and sequence models of the other
tests against the same maths written in PyTorch (float64 autograd)."""

from __future__ import annotations

import io
import sys
import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from _autodiff_check import assert_close, gradients, run_ort
from onnxforge.runtime.autodiff import gradient_model

sys.path.insert(0, str(Path(__file__).parent))
import test_autodiff_control_flow as cf  # the models live there
import test_autodiff_sequences as sq

pytestmark = pytest.mark.torch
TOL = 1e-4
R = np.random.default_rng(12)


class StridedNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 4, 3, stride=2, padding=1)
        self.c2 = nn.Conv2d(4, 8, (3, 2), stride=(2, 3), groups=2)
        self.fc = nn.Linear(8, 3)

    def forward(self, x):
        y = F.max_pool2d(F.relu(self.c1(x)), 3, stride=2, padding=1)
        y = F.avg_pool2d(self.c2(F.pad(y, (1, 1, 1, 1))), 2, stride=2, ceil_mode=False)
        return self.fc(y.mean((2, 3)))


class TinyUNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.down = nn.Conv2d(3, 4, 3, stride=2, padding=1)
        self.mid = nn.Conv2d(4, 4, 3, padding=1)
        self.out = nn.Conv2d(7, 2, 1)

    def forward(self, x):
        d = F.relu(self.down(x))
        u = F.interpolate(self.mid(d), size=x.shape[-2:], mode="bilinear", align_corners=False)
        return self.out(torch.cat([u, x], 1))


class TinyViT(nn.Module):
    def __init__(self, d=8, patch=4):
        super().__init__()
        self.patch = nn.Conv2d(3, d, patch, stride=patch)
        self.cls = nn.Parameter(torch.randn(1, 1, d))
        self.mix = nn.Linear(d, d)
        self.head = nn.Linear(d, 2)

    def forward(self, x):
        p = self.patch(x).flatten(2).transpose(1, 2)
        t = torch.cat([self.cls.expand(x.shape[0], -1, -1), p], 1)
        t = t + torch.tanh(self.mix(t))
        return self.head(t[:, 0])


def export(module, x):
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (torch.tensor(x),), buf, input_names=["x"], output_names=["y"], opset_version=17,
                          dynamo=False, do_constant_folding=False,
                          dynamic_axes={"x": {0: "N", 2: "H", 3: "W"}, "y": {0: "N"}})
    return onnx.load_from_string(buf.getvalue())


@pytest.mark.parametrize("net,shape", [(StridedNet, (2, 3, 23, 19)), (TinyUNet, (2, 3, 9, 7)),
                                       (TinyViT, (2, 3, 12, 8))], ids=["strided", "unet", "vit"])
def test_dynamic_export_gradients_equal_pytorch(net, shape):
    torch.manual_seed(0)
    module = net()
    x = R.standard_normal(shape).astype(np.float32)
    model = export(module, x)
    dims = [d.dim_param or d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims[2:] == ["H", "W"], dims  # the spatial dims are symbolic
    names = {t.name for t in model.graph.initializer}
    params = {k: p for k, p in module.named_parameters() if k in names}
    assert len(params) == len(list(module.parameters()))
    y = module(torch.tensor(x))
    dy = R.standard_normal(tuple(y.shape)).astype(np.float32)
    y.backward(torch.tensor(dy))
    got, out, g = gradients(model, list(params), "y", {"x": x, "dY": dy}, seed="dY", tol=TOL, both=net is not TinyUNet)
    assert_close(out["y"], y.detach().numpy(), TOL, what=f"{net.__name__} forward")
    for k, p in params.items():
        assert_close(got[k], p.grad.numpy(), TOL, what=f"{net.__name__} d{k}")
    # the same gradient model at another spatial size: nothing was fixed at build time
    x2 = R.standard_normal(shape[:2] + (shape[2] + 5, shape[3] + 3)).astype(np.float32)
    module.zero_grad()
    y2 = module(torch.tensor(x2))
    dy2 = R.standard_normal(tuple(y2.shape)).astype(np.float32)
    y2.backward(torch.tensor(dy2))
    out2 = run_ort(g, {"x": x2, "dY": dy2})
    for k, p in params.items():
        assert_close(out2[f"{k}_grad"], p.grad.numpy(), TOL, what=f"{net.__name__} d{k} at {x2.shape}")


def _torch_grads(fn, feeds, wrt, dy):
    t = {k: torch.tensor(v, requires_grad=k in wrt) for k, v in feeds.items()}
    y = fn(**t)
    y.backward(torch.tensor(dy))
    return {k: np.zeros_like(feeds[k]) if t[k].grad is None else t[k].grad.numpy() for k in wrt}


def _compare(m, feeds, wrt, fn):
    dy = R.standard_normal(run_ort(m, feeds)["y"].shape)
    got = run_ort(gradient_model(m, wrt, "y", seed="dY"), {**feeds, "dY": dy})
    want = _torch_grads(fn, feeds, wrt, dy)
    for w in wrt:
        assert_close(got[f"{w}_grad"], want[w], 1e-9, what=f"d{w} vs PyTorch")


def test_loop_equals_pytorch_unrolled():
    def fn(h0, w, b, limit, M):
        h, scans, count = h0, [], 0
        for _ in range(int(M)):
            h = torch.tanh(h * w + b)
            count += 1
            scans.append(h * h)
            if float(h.detach().sum()) >= float(limit):
                break
        return h * (torch.stack(scans).sum(0) + 1) + count
    feeds = {"h0": R.standard_normal(3) * 0.5, "w": R.standard_normal(3), "b": R.uniform(0.2, 0.6, 3),
             "limit": np.array(1.2), "M": np.array(6, np.int64)}
    _compare(cf.loop_model(), feeds, ["h0", "w", "b"], fn)


def test_scan_equals_pytorch_rnn():
    def fn(h0, x, w, v):
        h, outs = h0, []
        for t in range(x.shape[0] - 1, -1, -1):  # scan_input_directions=[1]
            h = torch.tanh(h * w + x[t])
            outs.append(h * v)
        return h * torch.stack(outs).sum(0)
    _compare(cf.scan_model(0, 1, 1, 0), cf.scan_feeds(), ["h0", "x", "w", "v"], fn)


def test_if_equals_pytorch_branches():
    def fn(x, w, b):
        if float(x.detach().sum()) > 0:
            return x * w
        return torch.tanh(x) + b if float(b.detach().sum()) > 0 else torch.tanh(x) - b
    for sign in (1, -1):
        feeds = {"x": np.abs(R.standard_normal((2, 3))) * sign, "w": R.standard_normal(3), "b": R.standard_normal(3)}
        _compare(cf.if_model(), feeds, ["x", "w", "b"], fn)


def test_gpt2_style_split_to_sequence_equals_pytorch_split():
    import onnx.helper as h

    nodes = [h.make_node("MatMul", ["x", "w"], ["qkv"]),
             h.make_node("SplitToSequence", ["qkv", "three"], ["parts"], axis=1),
             h.make_node("SequenceAt", ["parts", "zero"], ["q"]),
             h.make_node("SequenceAt", ["parts", "one"], ["k"]),
             h.make_node("SequenceAt", ["parts", "minus_one"], ["v"]),
             h.make_node("Mul", ["q", "k"], ["qk"]),
             h.make_node("Tanh", ["v"], ["tv"]),
             h.make_node("Add", ["qk", "tv"], ["y"])]
    m = sq.model(nodes, [sq.x_input(dims=("N", 4)), h.make_tensor_value_info("w", onnx.TensorProto.FLOAT, [4, 9])],
                 [sq.i64("three", [3, 3, 3]), sq.i64("zero", 0), sq.i64("one", 1), sq.i64("minus_one", -1)])

    def fn(x, w):
        q, k, v = torch.split(x @ w, 3, dim=1)
        return q * k + torch.tanh(v)
    feeds = {"x": R.standard_normal((3, 4)).astype(np.float32), "w": R.standard_normal((4, 9)).astype(np.float32)}
    dy = R.standard_normal((3, 3)).astype(np.float32)
    got = run_ort(gradient_model(m, ["x", "w"], "y", seed="dY"), {**feeds, "dY": dy})
    want = _torch_grads(fn, feeds, ["x", "w"], dy)
    for w in ("x", "w"):
        assert_close(got[f"{w}_grad"], want[w], 1e-5, what=f"d{w} vs PyTorch")


class Branchy(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3, 3)

    def forward(self, x):
        def then(x):
            return torch.tanh(self.lin(x))

        def other(x):
            return self.lin(x) * 2

        return torch.cond(x.sum() > 0, then, other, (x,))


@pytest.mark.slow
def test_torch_cond_exported_by_the_dynamo_exporter_equals_pytorch():
    """torch.cond as the dynamo exporter writes it (an If whose branches read the weights from
    outside): both branches' weight and input gradients equal PyTorch's (the export takes ~10 s)."""
    torch.manual_seed(0)
    module = Branchy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = torch.onnx.export(module, (torch.randn(2, 3),), dynamo=True, optimize=False, verbose=False).model_proto
    assert any(n.op_type == "If" for n in model.graph.node)
    names = {t.name for t in model.graph.initializer}
    params = {k: p for k, p in module.named_parameters() if k in names}
    assert len(params) == 2
    out = model.graph.output[0].name
    g = gradient_model(model, [*params, "x"], out, seed="dY")
    for sign in (1, -1):
        x = (np.abs(R.standard_normal((2, 3))) * sign).astype(np.float32)
        dy = R.standard_normal((2, 3)).astype(np.float32)
        module.zero_grad()
        xt = torch.tensor(x, requires_grad=True)
        module(xt).backward(torch.tensor(dy))
        got = run_ort(g, {"x": x, "dY": dy})
        assert_close(got["x_grad"], xt.grad.numpy(), TOL, what=f"torch.cond dx ({sign})")
        for k, p in params.items():
            assert_close(got[f"{k}_grad"], p.grad.numpy(), TOL, what=f"torch.cond d{k} ({sign})")
