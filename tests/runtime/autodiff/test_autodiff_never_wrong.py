"""Never wrong: an output a rule ignores, a sequence or value of unknown type, or an op without a
rule on the path to the loss is refused up front (named: op, node, reason), and
``missing_rules`` predicts it; the formerly wrong rules (LayerNormalization's Mean/InvStdDev,
OneHot's values, Range's start/delta, Clip with min > max) equal central differences."""

from __future__ import annotations

import functools

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from _autodiff_check import fd_check, graph_model, run_both, single_op_model, vi
from onnxforge.runtime.autodiff import UnsupportedOpError, gradient_model, missing_rules

R = np.random.default_rng(23)


_model = functools.partial(graph_model, opset=18)


def _refused(m, wrt, of, *phrases):
    with pytest.raises(UnsupportedOpError) as info:
        gradient_model(m, wrt, of)
    for p in phrases:
        assert p in str(info.value), str(info.value)
    predicted = missing_rules(m, wrt, of)
    assert predicted and all((op, name) in predicted for op, name, _ in info.value.missing), predicted
    return str(info.value)


def test_sequence_path_is_differentiated_not_dropped():
    """GPT-2's class of bug: SplitToSequence/SequenceAt between a parameter and the loss gave
    all-zero gradients (their sequence value was taken for a constant). Values that may carry a
    derivative stay on the path: the sequence rules differentiate it (central differences)."""
    m = _model([helper.make_node("Mul", ["x", "w"], ["h"], name="scale"),
                helper.make_node("SplitToSequence", ["h"], ["seq"], name="split_seq", axis=1),
                helper.make_node("SequenceAt", ["seq", "i"], ["part"], name="seq_at"),
                helper.make_node("ReduceSum", ["part"], ["loss"], name="sum", keepdims=0)],
               [vi("x", [2, 3]), vi("w", [2, 3])], [vi("loss", [])],
               [numpy_helper.from_array(np.array(1, np.int64), "i")])
    feeds = {"x": R.standard_normal((2, 3)).astype(np.float32), "w": R.standard_normal((2, 3)).astype(np.float32)}
    fd_check(m, feeds, ["w"], "loss", rng=R)


def test_optional_value_on_the_path_is_refused():
    """An optional (a non-tensor value no rule handles) on the path: refused, never skipped."""
    m = _model([helper.make_node("Mul", ["x", "w"], ["h"], name="scale"),
                helper.make_node("Optional", ["h"], ["opt"], name="wrap"),
                helper.make_node("OptionalGetElement", ["opt"], ["part"], name="unwrap"),
                helper.make_node("ReduceSum", ["part"], ["loss"], name="sum", keepdims=0)],
               [vi("x", [2, 3])], [vi("loss", [])], [numpy_helper.from_array(np.ones((2, 3), np.float32), "w")])
    msg = _refused(m, ["w"], "loss", "'Optional'", "'wrap'")
    assert "no gradient rule" in msg


def test_value_of_unknown_type_from_custom_op_is_refused():
    m = _model([helper.make_node("Mul", ["x", "w"], ["h"], name="scale"),
                helper.make_node("Mystery", ["h"], ["z"], name="odd", domain="custom.x"),
                helper.make_node("Relu", ["z"], ["loss"], name="relu")],
               [vi("x", [2, 3])], [vi("loss", [2, 3])],
               [numpy_helper.from_array(np.ones((2, 3), np.float32), "w")])
    m.opset_import.append(helper.make_opsetid("custom.x", 1))
    _refused(m, ["w"], "loss", "Mystery", "odd", "domain 'custom.x'")


def test_ignored_output_on_the_path_is_refused():
    """BatchNormalization in training mode: its running statistics are state the rule does not
    differentiate; reaching the loss through one is a refusal, not a gradient without it."""
    c = 3
    x = R.standard_normal((4, c, 2)).astype(np.float32)
    inits = {"mean": np.zeros(c, np.float32), "var": np.ones(c, np.float32)}
    m = single_op_model("BatchNormalization", {"x": x, "scale": np.ones(c, np.float32), "b": np.zeros(c, np.float32),
                                               **inits}, n_out=3, opset=15, const_inputs=inits, training_mode=1)
    gradient_model(m, ["x", "scale"], "y0")  # Y alone: fine
    _refused(m, ["x"], "y1", "output 1", "does not differentiate it", "'the_node'")


def test_int_path_is_cut_where_the_derivative_is_zero():
    """Shape, ArgMax, comparisons: integer/boolean values are piecewise constant, not refused."""
    m = _model([helper.make_node("ArgMax", ["x"], ["am"], axis=1, keepdims=0),
                helper.make_node("Cast", ["am"], ["amf"], to=TensorProto.FLOAT),
                helper.make_node("Unsqueeze", ["amf", "one"], ["amu"]),
                helper.make_node("Mul", ["x", "amu"], ["loss"])],
               [vi("x", [2, 3])], [vi("loss", [2, 3])], [numpy_helper.from_array(np.array([1], np.int64), "one")])
    x = R.standard_normal((2, 3)).astype(np.float32)
    fd_check(m, {"x": x}, ["x"], "loss", rng=R)


@pytest.mark.parametrize("out", ["y1", "y2"])
def test_layer_normalization_mean_and_invstddev_cotangents(out):
    """Against central differences of numpy's float64 mean / (var + eps)^-1/2 (onnx.reference
    computes LayerNormalization's stats in float32 only, too coarse for differences)."""
    eps = 1e-5
    x = R.standard_normal((3, 5))
    feeds = {"x": x.astype(np.float32), "s": R.standard_normal(5).astype(np.float32),
             "b": R.standard_normal(5).astype(np.float32)}
    m = single_op_model("LayerNormalization", feeds, n_out=3, axis=-1, epsilon=eps)
    dy = R.standard_normal((3, 1))

    def f(v):
        stat = v.mean(-1, keepdims=True) if out == "y1" else 1 / np.sqrt(v.var(-1, keepdims=True) + eps)
        return float(np.sum(stat * dy))

    fd = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        hi, lo = x.copy(), x.copy()
        hi[idx] += 1e-6
        lo[idx] -= 1e-6
        fd[idx] = (f(hi) - f(lo)) / 2e-6
    g = gradient_model(m, ["x", "s", "b"], out, seed="dY")
    got = run_both(g, {**feeds, "dY": dy.astype(np.float32)})
    np.testing.assert_allclose(got["x_grad"], fd, rtol=2e-4, atol=2e-4)
    assert not got["s_grad"].any() and not got["b_grad"].any()


def test_one_hot_values():
    m = single_op_model("OneHot", {"i": np.array([0, 2, 1], np.int64), "d": np.array(3, np.int64),
                                   "v": np.array([0.5, 2.0], np.float32)}, const_inputs={"i": 0, "d": 0})
    fd_check(m, {"v": np.array([0.5, 2.0], np.float32)}, ["v"], "y0", rng=R)


def test_range_start_and_delta():
    feeds = {"s": np.array(0.5, np.float32), "l": np.array(4.2, np.float32), "d": np.array(0.75, np.float32)}
    m = single_op_model("Range", feeds)
    fd_check(m, feeds, ["s", "l", "d"], "y0", rng=R, eps=1e-7)


@pytest.mark.parametrize("lo,hi", [(-0.5, 0.5), (0.5, -0.5)])
def test_clip_including_min_above_max(lo, hi):
    x = np.array([-1.0, -0.2, 0.1, 0.9, 0.3], np.float32)
    feeds = {"x": x, "lo": np.array(lo, np.float32), "hi": np.array(hi, np.float32)}
    m = single_op_model("Clip", feeds, opset=13)
    fd_check(m, feeds, ["x", "lo", "hi"], "y0", rng=R)


def test_dropout_ratio_in_inference_has_zero_gradient_and_is_refused_in_training():
    x = R.standard_normal((3, 4)).astype(np.float32)
    feeds = {"x": x, "r": np.array(0.3, np.float32)}
    m = single_op_model("Dropout", feeds)
    fd_check(m, feeds, ["x", "r"], "y0", rng=R)
    t = single_op_model("Dropout", {**feeds, "t": np.array(True)}, const_inputs={"t": 0})
    _refused(t, ["x", "r"], "y0", "ratio", "random")
