"""The rules of the ops exporters emit (issue 23) against PyTorch autograd on the same values:
ONNX Runtime and onnx.reference run the gradient model (onnx.reference alone past the opsets
ONNX Runtime 1.19 loads)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from _autodiff_torch import check_op

pytestmark = pytest.mark.torch
R = np.random.default_rng(29)


def f32(*shape, scale=1.0):
    return (R.uniform(-1, 1, shape) * scale).astype(np.float32)


X = f32(3, 5, scale=3.0)

UNARY = [
    ("Gelu", {}, 20, lambda x: F.gelu(x)),
    ("Gelu", {"approximate": "tanh"}, 20, lambda x: F.gelu(x, approximate="tanh")),
    ("HardSwish", {}, 17, F.hardswish),
    ("HardSigmoid", {"alpha": 1 / 6, "beta": 0.5}, 17, F.hardsigmoid),
    ("Mish", {}, 18, F.mish),
    ("Elu", {"alpha": 0.5}, 17, lambda x: F.elu(x, 0.5)),
    ("Celu", {"alpha": 1.5}, 17, lambda x: F.celu(x, 1.5)),
    ("Selu", {}, 17, F.selu),
    ("Softsign", {}, 17, F.softsign),
    ("ThresholdedRelu", {"alpha": 0.3}, 17, lambda x: F.threshold(x, 0.3, 0.0)),
    ("Shrink", {"lambd": 0.4}, 17, lambda x: F.hardshrink(x, 0.4)),
    ("Shrink", {"lambd": 0.4, "bias": 0.4}, 17, lambda x: F.softshrink(x, 0.4)),
    ("Sin", {}, 17, torch.sin), ("Cos", {}, 17, torch.cos), ("Tan", {}, 17, torch.tan),
    ("Atan", {}, 17, torch.atan), ("Sinh", {}, 17, torch.sinh), ("Cosh", {}, 17, torch.cosh),
    ("Asinh", {}, 17, torch.asinh),
]


@pytest.mark.parametrize("op,attrs,opset,fn", UNARY, ids=[f"{u[0]}{'-' + str(list(u[1].values())[-1]) if u[1] else ''}"
                                                          for u in UNARY])
def test_unary(op, attrs, opset, fn):
    x = X / 3 if op in ("Tan",) else X
    check_op(op, {"X": x}, fn, attrs=attrs, opset=opset, tol=2e-5)


def test_swish_opset_24_reference_only():
    check_op("Swish", {"X": X}, lambda x: x * torch.sigmoid(0.7 * x), attrs={"alpha": 0.7}, opset=24,
             reference_only=True)


def test_inverse_trig():
    x = f32(3, 4) * 0.9
    for op, fn in (("Asin", torch.asin), ("Acos", torch.acos), ("Atanh", torch.atanh)):
        check_op(op, {"X": x}, fn)
    check_op("Acosh", {"X": np.abs(x) + 1.1}, torch.acosh)


def test_prelu_channel_slope():
    check_op("PRelu", {"X": f32(2, 3, 4, 4), "slope": f32(3, 1, 1)},
             lambda x, s: F.prelu(x, s.reshape(3)))


def test_instance_and_group_normalization():
    x, s, b = f32(2, 6, 4, 5, scale=2), f32(6), f32(6)
    check_op("InstanceNormalization", {"X": x, "scale": s, "B": b},
             lambda x, s, b: F.instance_norm(x, weight=s, bias=b, eps=1e-5), tol=2e-5)
    check_op("GroupNormalization", {"X": x, "scale": s, "B": b},
             lambda x, s, b: F.group_norm(x, 3, s, b, eps=1e-5), attrs={"num_groups": 3, "epsilon": 1e-5},
             opset=21, tol=2e-5)


def test_rms_normalization_opset_23():
    x, s = f32(2, 3, 8, scale=2), f32(8)
    check_op("RMSNormalization", {"X": x, "scale": s}, lambda x, s: F.rms_norm(x, (8,), s, eps=1e-5),
             attrs={"epsilon": 1e-5}, opset=23, reference_only=True, tol=2e-5)


def test_lp_normalization():
    check_op("LpNormalization", {"X": f32(3, 5)}, lambda x: F.normalize(x, p=2.0, dim=1), attrs={"axis": 1, "p": 2})


def test_einsum_cumsum_topk():
    a, b = f32(2, 3, 4), f32(2, 4, 5)
    check_op("Einsum", {"A": a, "B": b}, lambda a, b: torch.einsum("bij,bjk->bik", a, b),
             attrs={"equation": "bij,bjk->bik"})
    check_op("CumSum", {"X": f32(3, 4), "axis": np.array(1, np.int64)}, lambda x, ax: torch.cumsum(x, 1),
             consts=["axis"])
    x = R.permutation(40).reshape(4, 10).astype(np.float32)
    check_op("TopK", {"X": x, "K": np.array([3], np.int64)}, lambda x, k: torch.topk(x, 3, dim=1).values,
             consts=["K"], n_out=2)


def test_reductions():
    x = f32(3, 4, 5)
    axes = {"axes": [1], "keepdims": 0}
    check_op("ReduceMax", {"X": x}, lambda x: torch.amax(x, 1), attrs=axes)
    check_op("ReduceMin", {"X": x}, lambda x: torch.amin(x, 1), attrs=axes)
    check_op("ReduceProd", {"X": x}, lambda x: torch.prod(x, 1), attrs=axes)
    check_op("ReduceL2", {"X": x}, lambda x: torch.linalg.vector_norm(x, 2, dim=1), attrs=axes)
    check_op("ReduceL1", {"X": x}, lambda x: torch.linalg.vector_norm(x, 1, dim=1), attrs=axes)
    check_op("ReduceLogSumExp", {"X": x}, lambda x: torch.logsumexp(x, 1), attrs=axes)
    check_op("ReduceSumSquare", {"X": x}, lambda x: (x * x).sum(1), attrs=axes)


def test_indexing_and_layout():
    x = f32(1, 8, 3, 2)
    check_op("DepthToSpace", {"X": x}, lambda x: F.pixel_shuffle(x, 2), attrs={"blocksize": 2, "mode": "CRD"})
    check_op("Tile", {"X": f32(2, 3), "r": np.array([2, 2], np.int64)}, lambda x, r: x.repeat(2, 2), consts=["r"])
    data = f32(4, 3, 2)
    idx = np.array([[0, 1], [3, 2], [0, 1]], np.int64)
    check_op("GatherND", {"X": data, "I": idx}, lambda x, i: x[i[:, 0], i[:, 1]], consts=["I"])
    check_op("Pad", {"X": f32(1, 2, 4, 5), "pads": np.array([0, 0, 1, 2, 0, 0, 2, 1], np.int64)},
             lambda x, p: F.pad(x, (2, 1, 1, 2), mode="reflect"), consts=["pads"], attrs={"mode": "reflect"})
    check_op("Pad", {"X": f32(1, 2, 4, 5), "pads": np.array([0, 0, 1, 2, 0, 0, 2, 1], np.int64)},
             lambda x, p: F.pad(x, (2, 1, 1, 2), mode="replicate"), consts=["pads"], attrs={"mode": "edge"})


def test_losses():
    scores, labels = f32(5, 4, scale=2), np.array([0, 3, 1, 1, 2], np.int64)
    w = np.abs(f32(4)) + 0.1
    check_op("SoftmaxCrossEntropyLoss", {"scores": scores, "labels": labels},
             lambda s, t: F.cross_entropy(s, t), consts=["labels"], attrs={"reduction": "mean"})
    check_op("SoftmaxCrossEntropyLoss", {"scores": scores, "labels": labels, "w": w},
             lambda s, t, w: F.cross_entropy(s, t, weight=w, ignore_index=1), consts=["labels", "w"],
             attrs={"reduction": "mean", "ignore_index": 1})
    logp = np.log(np.abs(f32(5, 4)) + 0.1).astype(np.float32)
    check_op("NegativeLogLikelihoodLoss", {"input": logp, "target": labels}, lambda x, t: F.nll_loss(x, t, reduction="sum"),
             consts=["target"], attrs={"reduction": "sum"})


def test_gelu_erf_against_its_formula():
    x = torch.tensor(np.asarray(X, np.float64), requires_grad=True)
    (0.5 * x * (1 + torch.erf(x / math.sqrt(2)))).sum().backward()
    check_op("Gelu", {"X": X}, lambda x: 0.5 * x * (1 + torch.erf(x / math.sqrt(2))), opset=20)
