"""Without PyTorch (the CPython 3.13 CI leg runs these on the newest onnxruntime): the gradient
models of every builder and of a set of rules run in the installed ``onnxruntime.InferenceSession``
and in ``onnx.reference.ReferenceEvaluator`` with the same results (nothing outside the standard
is used), and equal central differences in float64 on random coordinates."""

from __future__ import annotations

import numpy as np
import onnxruntime
import pytest

from _autodiff_cases import BUILDERS, builder_case
from _autodiff_check import fd_check, gradients, single_op_model

R = np.random.default_rng(13)


def test_runtime_is_plain_onnxruntime():
    """The sessions below are plain InferenceSessions of whatever onnxruntime is installed."""
    assert onnxruntime.__version__
    assert "CPUExecutionProvider" in onnxruntime.get_available_providers()


@pytest.mark.parametrize("name", BUILDERS)
def test_builder_gradient_runs_in_onnxruntime_and_reference(name):
    m, feeds, wrt, out, _ = builder_case(name, R)
    y = gradients(m, wrt, out, feeds)[1][out]
    dy = R.standard_normal(y.shape).astype(np.float32)
    got, outs, g = gradients(m, wrt, out, {**feeds, "dY": dy}, seed="dY")  # checks ORT == reference
    assert all(np.isfinite(v).all() and v.shape == outs[f"{k}_grad"].shape for k, v in got.items())
    assert any(np.abs(v).max() > 0 for v in got.values())


@pytest.mark.parametrize("name", BUILDERS)
def test_builder_gradient_equals_central_differences(name):
    m, feeds, wrt, out, _ = builder_case(name, R)
    fd_check(m, feeds, wrt, out, rng=R, coords=2, what=name)


def f32(*shape):
    return R.standard_normal(shape).astype(np.float32)


# (id, op, inputs (blank names: absent optional inputs), attributes, build-time constant inputs, opset)
RULES = [
    ("gemm-transA-transB", "Gemm", {"A": f32(3, 4), "B": f32(5, 3), "C": f32(5)},
     dict(transA=1, transB=1, alpha=0.7, beta=1.3), (), 17),
    ("matmul-batched-broadcast", "MatMul", {"A": f32(2, 1, 3, 4), "B": f32(3, 4, 2)}, {}, (), 17),
    ("add-broadcast", "Add", {"A": f32(2, 3, 4), "B": f32(3, 1)}, {}, (), 17),
    ("div-broadcast", "Div", {"A": f32(2, 3), "B": (np.abs(f32(3)) + 0.5)}, {}, (), 17),
    ("pow", "Pow", {"A": np.abs(f32(2, 3)) + 0.5, "B": f32(3)}, {}, (), 17),
    ("softmax", "Softmax", {"X": f32(2, 3, 4)}, dict(axis=1), (), 17),
    ("log-softmax", "LogSoftmax", {"X": f32(3, 5)}, {}, (), 17),
    ("conv-strided-grouped", "Conv", {"X": f32(2, 4, 7, 6), "W": f32(6, 2, 3, 2), "B": f32(6)},
     dict(strides=[2, 1], pads=[1, 0, 1, 1], dilations=[1, 2], group=2), (), 17),
    ("conv-patches-strided-dilated", "Conv", {"X": f32(2, 8, 7, 6), "W": f32(3, 8, 2, 3), "B": f32(3)},
     dict(strides=[2, 1], pads=[1, 0, 0, 1], dilations=[2, 1]), (), 17),
    ("conv-transpose", "ConvTranspose", {"X": f32(2, 3, 4, 4), "W": f32(3, 2, 3, 3)},
     dict(strides=[2, 2], pads=[1, 1, 1, 1], output_padding=[1, 0]), (), 17),
    ("conv-transpose-same-upper", "ConvTranspose", {"X": f32(1, 2, 3, 4), "W": f32(2, 3, 3, 3)},
     dict(strides=[2, 2], auto_pad="SAME_UPPER"), (), 17),
    ("max-pool", "MaxPool", {"X": f32(2, 3, 6, 5)}, dict(kernel_shape=[2, 3], strides=[2, 1]), (), 17),
    ("average-pool-pads", "AveragePool", {"X": f32(2, 2, 5, 5)},
     dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]), (), 17),
    ("average-pool-ceil", "AveragePool", {"X": f32(2, 2, 7, 8)},
     dict(kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1), (), 17),
    ("layer-norm", "LayerNormalization", {"X": f32(3, 4, 5), "S": f32(5), "B": f32(5)}, dict(axis=-1), (), 17),
    ("gather-embedding", "Gather", {"D": f32(6, 3), "I": np.array([[0, 2, 2], [5, 0, 1]], np.int64)}, {}, ("I",), 17),
    ("gather-scalar-negative", "Gather", {"D": f32(1, 4, 3), "I": np.array(-1, np.int64)}, {}, ("I",), 17),
    ("gather-scalar-axis2", "Gather", {"D": f32(2, 4, 3), "I": np.array(-2, np.int64)}, dict(axis=-1), ("I",), 17),
    ("gather-fed-scalar", "Gather", {"D": f32(5, 3), "I": np.array(-4, np.int64)}, {}, (), 17),
    ("gather-elements-duplicates", "GatherElements", {"D": f32(3, 4), "I": np.array([[2, 0, 2, 1], [2, 2, -1, 0]])},
     dict(axis=0), ("I",), 17),
    ("pad", "Pad", {"X": f32(3, 4, 5), "p": np.array([1, 0, 1, 0, 2, 2]), "v": np.array(0.3, np.float32)},
     {}, ("p",), 17),
    ("slice-steps", "Slice", {"X": f32(5, 6), "s": np.array([4, 1]), "e": np.array([0, 6]), "a": np.array([0, 1]),
                              "t": np.array([-2, 2])}, {}, ("s", "e", "a", "t"), 17),
    ("where", "Where", {"C": R.random((3, 4)) > 0.5, "X": f32(3, 4), "Y": f32(4)}, {}, ("C",), 17),
    ("clip", "Clip", {"X": f32(3, 4), "lo": np.array(-0.5, np.float32), "hi": np.array(0.5, np.float32)}, {},
     ("lo", "hi"), 17),
    ("max-broadcast", "Max", {"A": f32(3, 4), "B": f32(4)}, {}, (), 17),
    ("expand", "Expand", {"X": f32(3, 1), "s": np.array([2, 3, 4])}, {}, ("s",), 17),
    ("reduce-mean", "ReduceMean", {"X": f32(2, 3, 4), "a": np.array([0, 2])}, dict(keepdims=0), ("a",), 18),
    ("lstm-bidirectional", "LSTM", {"X": f32(4, 2, 3), "W": f32(2, 12, 3), "R": f32(2, 12, 3), "B": f32(2, 24),
                                    " ": None, "h": f32(2, 2, 3), "c": f32(2, 2, 3)},
     dict(hidden_size=3, direction="bidirectional"), (), 17),
    ("resize-nearest-1.5", "Resize", {"X": f32(1, 2, 4, 5), "roi": np.zeros(0, np.float32),
                                      "scales": np.array([1, 1, 1.5, 0.6], np.float32)}, {}, ("roi", "scales"), 17),
    ("resize-linear-crop", "Resize", {"X": f32(2, 1, 5, 6), "roi": np.array([0, 0, 0.2, 0.1, 1, 1, 0.9, 0.7], np.float32),
                                      " ": None, "sizes": np.array([2, 1, 4, 7])},
     dict(mode="linear", coordinate_transformation_mode="tf_crop_and_resize", extrapolation_value=0.5),
     ("roi", "sizes"), 17),
    ("resize-cubic-antialias", "Resize", {"X": f32(1, 2, 8, 7), "roi": np.zeros(0, np.float32),
                                          "scales": np.array([0.5, 0.6], np.float32)},
     dict(mode="cubic", antialias=1, axes=[2, 3]), ("roi", "scales"), 18),
    ("gru-bidirectional", "GRU", {"X": f32(4, 2, 3), "W": f32(2, 9, 3), "R": f32(2, 9, 3), "B": f32(2, 18),
                                  " ": None, "h": f32(2, 2, 3)}, dict(hidden_size=3, direction="bidirectional"), (), 17),
    ("gru-linear-before-reset", "GRU", {"X": f32(3, 2, 3), "W": f32(1, 6, 3), "R": f32(1, 6, 2), "B": f32(1, 12)},
     dict(hidden_size=2, linear_before_reset=1), (), 17),
]


def _rule_model(op, inputs, attrs, consts, opset):
    present = {k: v for k, v in inputs.items() if k.strip()}
    m = single_op_model(op, {k: (np.zeros(0) if v is None else v) for k, v in inputs.items()}, opset=opset,
                        const_inputs=dict.fromkeys(consts), **attrs)
    from onnx import numpy_helper

    for init in m.graph.initializer:
        init.CopyFrom(numpy_helper.from_array(np.asarray(present[init.name]), init.name))
    feeds = {k: v for k, v in present.items() if k not in consts}
    wrt = [k for k, v in feeds.items() if v.dtype.kind == "f"]
    return m, feeds, wrt


@pytest.mark.parametrize("case", RULES, ids=[c[0] for c in RULES])
def test_rule_gradient_runs_in_onnxruntime_and_reference(case):
    _, op, inputs, attrs, consts, opset = case
    m, feeds, wrt = _rule_model(op, inputs, attrs, consts, opset)
    y = gradients(m, wrt, "y0", feeds)[1]["y0"]
    got, _, _ = gradients(m, wrt, "y0", {**feeds, "dY": R.standard_normal(y.shape).astype(np.float32)}, seed="dY")
    assert set(got) == set(wrt)


@pytest.mark.parametrize("case", RULES, ids=[c[0] for c in RULES])
def test_rule_gradient_equals_central_differences(case):
    _, op, inputs, attrs, consts, opset = case
    m, feeds, wrt = _rule_model(op, inputs, attrs, consts, opset)
    fd_check(m, feeds, wrt, "y0", rng=R, coords=4, what=case[0])
