"""Sequence ops (SplitToSequence, SequenceAt, SequenceConstruct, SequenceInsert, SequenceErase,
ConcatFromSequence; SequenceLength and SequenceEmpty carry none): gradients by central differences
in float64 (onnx.reference), the gradient model also run by ONNX Runtime and compared."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from _autodiff_check import assert_close, fd_check, run_ort, run_ref
from onnxforge.runtime.autodiff import UnsupportedOpError, gradient_model

R = np.random.default_rng(23)
F = TensorProto.FLOAT


def model(nodes, inputs, inits=(), out="y", opset=18):
    g = helper.make_graph(nodes, "seq", inputs, [helper.make_value_info(out, onnx.TypeProto())], list(inits))
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    m.graph.output[0].CopyFrom(onnx.shape_inference.infer_shapes(m).graph.output[0])  # inferred type, rank
    return m


def i64(name, value):
    return numpy_helper.from_array(np.array(value, np.int64), name)


def x_input(name="x", dims=("N", 6)):
    return helper.make_tensor_value_info(name, F, list(dims))


def check(m, feeds, wrt, tol=1e-6):
    """Central differences in float64, and ONNX Runtime agreeing with onnx.reference in float32."""
    fd_check(m, feeds, wrt, "y", rng=R, tol=tol)
    g = gradient_model(m, wrt, "y")
    onnx.checker.check_model(g, full_check=True)
    a, b = run_ort(g, feeds), run_ref(g, feeds)
    for w in wrt:
        assert_close(a[f"{w}_grad"], b[f"{w}_grad"], 1e-5, what=f"{w}: ORT vs reference")
    return a


def test_gpt2_split_to_sequence_read_by_sequence_at():
    """GPT-2 from the dynamo exporter without its optimizer: q, k, v cut from one projection by
    SplitToSequence and read back by SequenceAt; every part must reach the weight (no zeros)."""
    nodes = [helper.make_node("MatMul", ["x", "w"], ["qkv"]),
             helper.make_node("SplitToSequence", ["qkv", "three"], ["parts"], axis=1),
             helper.make_node("SequenceAt", ["parts", "zero"], ["q"]),
             helper.make_node("SequenceAt", ["parts", "one"], ["k"]),
             helper.make_node("SequenceAt", ["parts", "minus_one"], ["v"]),
             helper.make_node("Mul", ["q", "k"], ["qk"]),
             helper.make_node("Tanh", ["v"], ["tv"]),
             helper.make_node("Add", ["qk", "tv"], ["y"])]
    inits = [i64("three", [3, 3, 3]), i64("zero", 0), i64("one", 1), i64("minus_one", -1)]
    m = model(nodes, [x_input(dims=("N", 4)), helper.make_tensor_value_info("w", F, [4, 9])], inits)
    feeds = {"x": R.standard_normal((3, 4)).astype(np.float32), "w": R.standard_normal((4, 9)).astype(np.float32)}
    out = check(m, feeds, ["x", "w"])
    assert np.all(np.abs(out["w_grad"]).reshape(4, 3, 3).sum(axis=(0, 2)) > 0)  # every third gets a gradient


@pytest.mark.parametrize("keepdims", [0, 1])
def test_split_to_sequence_without_split_and_a_position_read_twice(keepdims):
    nodes = [helper.make_node("SplitToSequence", ["x"], ["parts"], axis=-1, keepdims=keepdims),
             helper.make_node("SequenceAt", ["parts", "one"], ["a"]),
             helper.make_node("SequenceAt", ["parts", "one"], ["b"]),
             helper.make_node("SequenceAt", ["parts", "two"], ["c"]),
             helper.make_node("Mul", ["a", "b"], ["ab"]),
             helper.make_node("Add", ["ab", "c"], ["y"])]
    m = model(nodes, [x_input(dims=("N", 4))], [i64("one", 1), i64("two", -2)])
    check(m, {"x": R.standard_normal((3, 4)).astype(np.float32)}, ["x"])


def test_construct_insert_erase_concat():
    """A sequence built, grown at a run-time position, shrunk, and concatenated back (new_axis 0
    with tensors of different lengths, then new_axis 1)."""
    nodes = [helper.make_node("Tanh", ["x"], ["sx"]),
             helper.make_node("SequenceConstruct", ["x", "sx"], ["s0"]),
             helper.make_node("SequenceInsert", ["s0", "z", "pos"], ["s1"]),
             helper.make_node("SequenceInsert", ["s1", "x"], ["s2"]),
             helper.make_node("SequenceErase", ["s2", "minus_two"], ["s3"]),
             helper.make_node("ConcatFromSequence", ["s3"], ["cat"], axis=1),
             helper.make_node("SequenceConstruct", ["x", "x"], ["s4"]),
             helper.make_node("ConcatFromSequence", ["s4"], ["stack"], axis=-1, new_axis=1),
             helper.make_node("ReduceSum", ["stack"], ["ss"], keepdims=0),
             helper.make_node("Mul", ["cat", "ss"], ["y"])]
    m = model(nodes, [x_input(dims=("N", 3)), helper.make_tensor_value_info("z", F, ["N", 2]),
                      helper.make_tensor_value_info("pos", TensorProto.INT64, [])], [i64("minus_two", -2)])
    for pos in (-2, -1, 1):  # not 2 (the end): onnx.reference, the differences' runtime, inserts that at 0
        feeds = {"x": R.standard_normal((2, 3)).astype(np.float32), "z": R.standard_normal((2, 2)).astype(np.float32),
                 "pos": np.array(pos, np.int64)}
        check(m, feeds, ["x", "z"])


def test_sequence_length_carries_no_gradient_and_sequence_map_is_refused():
    nodes = [helper.make_node("SplitToSequence", ["x"], ["parts"], axis=1),
             helper.make_node("SequenceLength", ["parts"], ["n"]),
             helper.make_node("Cast", ["n"], ["nf"], to=F),
             helper.make_node("SequenceAt", ["parts", "one"], ["a"]),
             helper.make_node("Mul", ["a", "nf"], ["y"])]
    m = model(nodes, [x_input(dims=("N", 4))], [i64("one", 1)])
    check(m, {"x": R.standard_normal((3, 4)).astype(np.float32)}, ["x"])
    body = helper.make_graph([helper.make_node("Neg", ["e"], ["o"])], "b", [helper.make_tensor_value_info("e", F, None)],
                             [helper.make_tensor_value_info("o", F, None)])
    nodes = [helper.make_node("SplitToSequence", ["x"], ["parts"], axis=1),
             helper.make_node("SequenceMap", ["parts"], ["mapped"], body=body),
             helper.make_node("ConcatFromSequence", ["mapped"], ["y"], axis=1)]
    m = model(nodes, [x_input(dims=("N", 4))])
    with pytest.raises(UnsupportedOpError, match="SequenceMap"):
        gradient_model(m, ["x"], "y")
