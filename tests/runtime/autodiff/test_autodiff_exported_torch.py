"""Models exported from PyTorch (torch.onnx.export, dynamo=False) that onnxforge has never seen:
parameter gradients equal PyTorch's within 1e-4."""

from __future__ import annotations

import io
import math
import warnings

import numpy as np
import onnx
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from _autodiff_check import assert_close, gradients
from onnxforge.runtime.autodiff import batchnorm_training_form

pytestmark = pytest.mark.torch
TOL = 1e-4


class Residual(nn.Module):
    def __init__(self, c=4):
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c)
        self.head = nn.Linear(c, 3)

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        y = F.relu(y + x)
        return self.head(F.adaptive_avg_pool2d(y, 1).flatten(1))


class DepthwiseSeparable(nn.Module):
    def __init__(self):
        super().__init__()
        self.dw = nn.Conv2d(3, 3, 3, stride=2, padding=1, groups=3)
        self.pw = nn.Conv2d(3, 8, 1)
        self.pool = nn.AvgPool2d(2)
        self.fc = nn.Linear(8 * 2 * 2, 4)

    def forward(self, x):
        y = F.relu6(self.dw(x))
        y = F.hardtanh(self.pw(y), -1.0, 1.0)
        return self.fc(self.pool(y).flatten(1))


class Attention(nn.Module):
    def __init__(self, d=8, heads=2):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(d, 3 * d)
        self.out = nn.Linear(d, d)
        self.norm1 = nn.LayerNorm(d)
        self.ff1 = nn.Linear(d, 2 * d)
        self.ff2 = nn.Linear(2 * d, d)
        self.norm2 = nn.LayerNorm(d)

    def forward(self, x):
        n, t, d = x.shape
        q, k, v = self.qkv(x).chunk(3, -1)
        split = lambda z: z.reshape(n, t, self.heads, d // self.heads).transpose(1, 2)  # noqa: E731
        q, k, v = split(q), split(k), split(v)
        a = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(d // self.heads), -1)
        y = (a @ v).transpose(1, 2).reshape(n, t, d)
        x = self.norm1(x + self.out(y))
        x = self.norm2(x + self.ff2(F.gelu(self.ff1(x))))
        return x.mean(1)


def export(module, x, training):
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (torch.tensor(x),), buf, input_names=["x"], output_names=["y"], opset_version=17,
                          dynamo=False, do_constant_folding=False,
                          training=torch.onnx.TrainingMode.TRAINING if training else torch.onnx.TrainingMode.EVAL,
                          dynamic_axes={"x": {0: "N"}, "y": {0: "N"}})
    return onnx.load_from_string(buf.getvalue())


def run(module, x, training=False, rewrite_bn=False, both=True):
    torch.manual_seed(0)
    for p in module.parameters():
        with torch.no_grad():
            p.add_(torch.randn_like(p) * 0.1)
    model = export(module, x, training)
    names = {t.name for t in model.graph.initializer}
    params = {k: v for k, v in module.named_parameters() if k in names}
    assert params, f"no parameters found by name among {sorted(names)}"
    if rewrite_bn:
        model, _ = batchnorm_training_form(model)
    module.train(training)
    y = module(torch.tensor(x))
    dy = np.random.default_rng(5).standard_normal(tuple(y.shape)).astype(np.float32)
    module.zero_grad()
    y.backward(torch.tensor(dy))
    got, outs, g = gradients(model, list(params), "y", {"x": x, "dY": dy}, seed="dY", both=both, tol=TOL)
    assert_close(outs["y"], y.detach().numpy(), TOL, what="exported forward")
    for k, p in params.items():
        assert_close(got[k], p.grad.numpy(), TOL, what=f"exported d{k}")
    return g


X4 = np.random.default_rng(4).standard_normal((3, 4, 5, 5)).astype(np.float32)


def test_residual_block_batchnorm_train_mode_as_exported():
    """BatchNormalization(training_mode=1) as exported: the rule's batch-statistics gradient."""
    run(Residual(), X4, training=True)


def test_residual_block_batchnorm_rewritten_to_primitives():
    run(Residual(), X4, training=True, rewrite_bn=True)


def test_residual_block_eval_mode():
    run(Residual(), X4, training=False)


def test_depthwise_separable():
    run(DepthwiseSeparable(), np.random.default_rng(6).standard_normal((2, 3, 8, 8)).astype(np.float32))


def test_attention_block():
    run(Attention(), np.random.default_rng(7).standard_normal((2, 5, 8)).astype(np.float32))
