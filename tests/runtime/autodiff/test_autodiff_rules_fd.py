"""Each rule added for issue 23 against central differences in float64 (onnx.reference runs the
forward and the gradient model), one single-op model per form."""

from __future__ import annotations

import numpy as np
import pytest

from _autodiff_check import fd_check, single_op_model

R = np.random.default_rng(2323)


def f(*shape, lo=-1.0, hi=1.0):
    return R.uniform(lo, hi, shape).astype(np.float32)


def away(*shape, gap=0.15):
    """Values kept ``gap`` away from 0 and from each other's kinks."""
    v = f(*shape)
    return (np.sign(v) * (np.abs(v) + gap)).astype(np.float32)


I64 = np.int64
X34 = away(3, 4)

# (id, op, inputs, const input names, opset, attrs, wrt)
CASES = [
    ("sin", "Sin", {"x": X34}, (), 17, {}, ["x"]),
    ("cos", "Cos", {"x": X34}, (), 17, {}, ["x"]),
    ("tan", "Tan", {"x": X34}, (), 17, {}, ["x"]),
    ("asin", "Asin", {"x": X34 * 0.8}, (), 17, {}, ["x"]),
    ("acos", "Acos", {"x": X34 * 0.8}, (), 17, {}, ["x"]),
    ("atan", "Atan", {"x": X34}, (), 17, {}, ["x"]),
    ("sinh", "Sinh", {"x": X34}, (), 17, {}, ["x"]),
    ("cosh", "Cosh", {"x": X34}, (), 17, {}, ["x"]),
    ("asinh", "Asinh", {"x": X34}, (), 17, {}, ["x"]),
    ("acosh", "Acosh", {"x": np.abs(X34) + 1.2}, (), 17, {}, ["x"]),
    ("atanh", "Atanh", {"x": X34 * 0.8}, (), 17, {}, ["x"]),
    ("softsign", "Softsign", {"x": X34}, (), 17, {}, ["x"]),
    ("elu", "Elu", {"x": X34}, (), 17, {"alpha": 0.7}, ["x"]),
    ("selu", "Selu", {"x": X34}, (), 17, {}, ["x"]),
    ("thresholded_relu", "ThresholdedRelu", {"x": X34}, (), 17, {"alpha": 0.4}, ["x"]),
    ("shrink", "Shrink", {"x": X34}, (), 17, {"lambd": 0.5, "bias": 0.2}, ["x"]),
    ("hard_sigmoid", "HardSigmoid", {"x": X34 * 6}, (), 17, {}, ["x"]),
    ("hard_swish", "HardSwish", {"x": X34 * 5}, (), 17, {}, ["x"]),
    ("gelu_tanh", "Gelu", {"x": X34 * 2}, (), 20, {"approximate": "tanh"}, ["x"]),
    ("mish", "Mish", {"x": X34 * 2}, (), 18, {}, ["x"]),
    ("prelu", "PRelu", {"x": away(2, 3, 4), "s": f(3, 1)}, (), 17, {}, ["x", "s"]),
    ("mean", "Mean", {"a": f(2, 3), "b": f(3), "c": f(2, 1)}, (), 17, {}, ["a", "b", "c"]),
    ("mod_fmod", "Mod", {"a": f(2, 3, lo=-5, hi=5), "b": away(3) * 2}, (), 17, {"fmod": 1}, ["a", "b"]),
    ("cast_like", "CastLike", {"x": X34, "t": np.zeros(1, np.float64)}, (), 17, {}, ["x", "t"]),
    ("cumsum", "CumSum", {"x": f(3, 4), "a": np.array(1, I64)}, ("a",), 17, {}, ["x"]),
    ("cumsum_rev_excl", "CumSum", {"x": f(3, 4), "a": np.array(0, I64)}, ("a",), 17,
     {"reverse": 1, "exclusive": 1}, ["x"]),
    ("topk", "TopK", {"x": R.permutation(24).reshape(3, 8).astype(np.float32), "k": np.array([3], I64)}, ("k",), 17,
     {"axis": 1}, ["x"]),
    ("reduce_max", "ReduceMax", {"x": f(3, 4)}, (), 17, {"axes": [1]}, ["x"]),
    ("reduce_max_ties", "ReduceMax", {"x": np.array([[1, 3, 3], [2, 0, 1]], np.float32)}, (), 17,
     {"keepdims": 0}, ["x"]),
    ("reduce_min_18", "ReduceMin", {"x": f(3, 4), "a": np.array([0], I64)}, ("a",), 18, {"keepdims": 0}, ["x"]),
    ("reduce_prod", "ReduceProd", {"x": f(3, 4)}, (), 17, {"axes": [1]}, ["x"]),
    ("reduce_prod_zeros", "ReduceProd", {"x": np.array([[0, 2, 3], [0, 0, 1], [1, 2, 4]], np.float32)}, (), 17,
     {"axes": [1]}, ["x"]),
    ("reduce_l1", "ReduceL1", {"x": away(3, 4)}, (), 17, {"axes": [0]}, ["x"]),
    ("reduce_l2", "ReduceL2", {"x": f(3, 4)}, (), 18, {"keepdims": 0}, ["x"]),
    ("reduce_lse", "ReduceLogSumExp", {"x": f(3, 4)}, (), 17, {"axes": [1]}, ["x"]),
    ("reduce_log_sum", "ReduceLogSum", {"x": np.abs(f(3, 4)) + 0.5}, (), 17, {"axes": [1]}, ["x"]),
    ("reduce_ssq", "ReduceSumSquare", {"x": f(3, 4)}, (), 17, {}, ["x"]),
    ("tile", "Tile", {"x": f(2, 3), "r": np.array([2, 3], I64)}, ("r",), 17, {}, ["x"]),
    ("depth_to_space", "DepthToSpace", {"x": f(1, 8, 2, 3)}, (), 17, {"blocksize": 2, "mode": "CRD"}, ["x"]),
    ("space_to_depth", "SpaceToDepth", {"x": f(1, 2, 4, 6)}, (), 17, {"blocksize": 2}, ["x"]),
    ("compress", "Compress", {"x": f(3, 4), "c": np.array([1, 0, 1], bool)}, ("c",), 17, {"axis": 0}, ["x"]),
    ("gather_nd", "GatherND", {"x": f(3, 4, 2), "i": np.array([[0, 1], [2, 3], [0, 1]], I64)}, ("i",), 17, {}, ["x"]),
    ("gather_nd_batch", "GatherND", {"x": f(2, 3, 4), "i": np.array([[[1]], [[2]]], I64)}, ("i",), 17,
     {"batch_dims": 1}, ["x"]),
    ("scatter_elements", "ScatterElements", {"x": f(3, 4), "i": np.array([[1, 0, 3]], I64), "u": f(1, 3)}, ("i",), 17,
     {"axis": 1}, ["x", "u"]),
    ("scatter_elements_add", "ScatterElements", {"x": f(3, 4), "i": np.array([[1, 1], [0, 2]], I64), "u": f(2, 2)},
     ("i",), 17, {"axis": 0, "reduction": "add"}, ["x", "u"]),
    ("scatter_nd", "ScatterND", {"x": f(4, 3), "i": np.array([[1], [3]], I64), "u": f(2, 3)}, ("i",), 17, {}, ["x", "u"]),
    ("reverse_sequence", "ReverseSequence", {"x": f(4, 3, 2), "l": np.array([2, 4, 1], I64)}, ("l",), 17,
     {"batch_axis": 1, "time_axis": 0}, ["x"]),
    ("pad_reflect", "Pad", {"x": f(3, 4), "p": np.array([1, 2, 2, 1], I64)}, ("p",), 18, {"mode": "reflect"}, ["x"]),
    ("pad_edge", "Pad", {"x": f(3, 4), "p": np.array([2, 0, 1, 3], I64)}, ("p",), 18, {"mode": "edge"}, ["x"]),
    ("pad_wrap", "Pad", {"x": f(3, 4), "p": np.array([1, 2, 1, 2], I64)}, ("p",), 19, {"mode": "wrap"}, ["x"]),
    ("pad_axes", "Pad", {"x": f(2, 3, 4), "p": np.array([1, 2], I64), "v": np.array(0.5, np.float32),
                         "a": np.array([-1], I64)}, ("p", "a"), 18, {}, ["x", "v"]),
    ("einsum_matmul", "Einsum", {"a": f(2, 3), "b": f(3, 4)}, (), 17, {"equation": "ij,jk->ik"}, ["a", "b"]),
    ("einsum_batch", "Einsum", {"a": f(2, 3, 4), "b": f(2, 4, 5)}, (), 17, {"equation": "bij,bjk->bik"}, ["a", "b"]),
    ("einsum_sum_alone", "Einsum", {"a": f(2, 3), "b": f(4)}, (), 17, {"equation": "ij,k->i"}, ["a", "b"]),
    ("einsum_implicit", "Einsum", {"a": f(3, 4), "b": f(4, 2)}, (), 17, {"equation": "ij,jk"}, ["a", "b"]),
    ("einsum_ellipsis", "Einsum", {"a": f(2, 3, 4), "b": f(4, 5)}, (), 17, {"equation": "...ij,jk->...ik"},
     ["a", "b"]),
    ("instance_norm", "InstanceNormalization", {"x": f(2, 3, 4, 5), "s": f(3), "b": f(3)}, (), 17, {}, ["x", "s", "b"]),
    ("lp_norm_2", "LpNormalization", {"x": away(3, 4)}, (), 17, {"axis": 1, "p": 2}, ["x"]),
    # positive: onnx.reference's p=1 norm is sum(X), not sum(|X|)
    ("lp_norm_1", "LpNormalization", {"x": np.abs(away(3, 4))}, (), 17, {"axis": 0, "p": 1}, ["x"]),
    ("global_max_pool", "GlobalMaxPool", {"x": f(2, 3, 4, 4)}, (), 17, {}, ["x"]),
    # indices as floats (allowed): piecewise constant, gradient 0; 0.5 away from the jumps
    ("one_hot_float_indices", "OneHot", {"i": np.array([0.5, 2.5, 1.5], np.float32), "d": np.array(3, I64),
                                         "v": np.array([0.25, 3.0], np.float32)}, ("d",), 17, {"axis": 0}, ["i", "v"]),
    # one gradient two inputs share (Add's, Mean's dY passed through): each gets its own output
    ("add_shared_gradient", "Add", {"a": f(2, 3), "b": f(2, 3)}, (), 17, {}, ["a", "b"]),
    ("mean_shared_gradient", "Mean", {"a": f(2, 3), "b": f(2, 3), "c": f(2, 3)}, (), 17, {}, ["a", "b", "c"]),
    ("range", "Range", {"s": np.array(0.5, np.float32), "l": np.array(3.0, np.float32),
                        "d": np.array(0.7, np.float32)}, (), 17, {}, ["s", "d"]),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_rule_equals_central_differences(case):
    _, op, inputs, consts, opset, attrs, wrt = case
    m = single_op_model(op, inputs, 2 if op == "TopK" else 1, opset=opset, const_inputs={k: inputs[k] for k in consts},
                        **attrs)
    feeds = {k: v for k, v in inputs.items() if k not in consts}
    fd_check(m, feeds, wrt, "y0", rng=R, what=case[0])
