"""Each op of the supported set, in hand-built ONNX graphs with non-default attributes, run by the
PyTorch interpreter module and compared with ONNX Runtime on the same inputs; a few graphs also go
through torch.export with a dynamic batch."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from onnxforge.runtime.convert import convert
from onnxforge.runtime.convert.to_torch import SUPPORTED_OPS, check_supported, to_torch_module
from onnxforge.runtime.convert._torch_ops import OPS
from onnxforge.runtime.convert.verify import random_feeds, run
from onnxforge.runtime.errors import ConversionError
from onnxforge.runtime.modelio.files import save_model

RNG = np.random.default_rng(11)


def w(*shape, name):
    return numpy_helper.from_array(RNG.standard_normal(shape).astype(np.float32), name)


def i64(values, name):
    return numpy_helper.from_array(np.asarray(values, np.int64), name)


def graph(nodes, x_shape, inits=(), opset=17, x_type=TensorProto.FLOAT, outputs=("y",)):
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", x_type, x_shape)],
                          [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs], list(inits))
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    return m


N = "N"
CASES = {
    "Gemm-alpha-beta-transA": graph([helper.make_node("Gemm", ["x", "W", "C"], ["y"], alpha=0.5, beta=2.0, transA=1)],
                                    [4, N], [w(4, 3, name="W"), w(1, 3, name="C")]),
    "MatMul-Add-Mul": graph([helper.make_node("MatMul", ["x", "W"], ["m"]), helper.make_node("Add", ["m", "b"], ["a"]),
                             helper.make_node("Mul", ["a", "a"], ["y"])], [N, 2, 4], [w(4, 3, name="W"), w(3, name="b")]),
    "Conv-groups-strides-asym-pads": graph(
        [helper.make_node("Conv", ["x", "W", "B"], ["y"], group=2, strides=[2, 1], pads=[0, 1, 1, 2], dilations=[1, 2])],
        [N, 4, 7, 7], [w(6, 2, 3, 3, name="W"), w(6, name="B")]),
    "Conv-auto-pad-same-lower": graph([helper.make_node("Conv", ["x", "W"], ["y"], auto_pad="SAME_LOWER", strides=[2, 2])],
                                      [N, 2, 6, 6], [w(3, 2, 4, 4, name="W")]),
    "Conv1d": graph([helper.make_node("Conv", ["x", "W"], ["y"], pads=[1, 1])], [N, 2, 9], [w(3, 2, 3, name="W")]),
    "MaxPool-ceil-pads": graph([helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[3, 3], strides=[2, 2],
                                                 pads=[1, 1, 1, 1], ceil_mode=1)], [N, 2, 8, 8]),
    "MaxPool-asym-pads": graph([helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[2, 2], pads=[0, 0, 1, 1])],
                               [N, 2, 5, 5]),
    "AveragePool-count-pad": graph([helper.make_node("AveragePool", ["x"], ["y"], kernel_shape=[3, 3], pads=[1, 1, 1, 1],
                                                     count_include_pad=1)], [N, 2, 6, 6]),
    "AveragePool-exclude-pad": graph([helper.make_node("AveragePool", ["x"], ["y"], kernel_shape=[2, 2], strides=[2, 2],
                                                       pads=[1, 1, 1, 1])], [N, 2, 6, 6]),
    "BatchNormalization": graph([helper.make_node("BatchNormalization", ["x", "s", "b", "m", "v"], ["y"], epsilon=1e-3)],
                                [N, 3, 4, 4], [w(3, name="s"), w(3, name="b"), w(3, name="m"),
                                               numpy_helper.from_array(RNG.random(3).astype(np.float32) + 0.5, "v")]),
    "Relu-Tanh-Sigmoid": graph([helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Tanh", ["x"], ["t"]),
                                helper.make_node("Sigmoid", ["x"], ["s"]), helper.make_node("Add", ["r", "t"], ["a"]),
                                helper.make_node("Add", ["a", "s"], ["y"])], [N, 5]),
    "Softmax-axis1-LogSoftmax": graph([helper.make_node("Softmax", ["x"], ["s"], axis=1),
                                       helper.make_node("LogSoftmax", ["x"], ["l"], axis=-1),
                                       helper.make_node("Add", ["s", "l"], ["y"])], [N, 3, 4]),
    "Flatten-axis2": graph([helper.make_node("Flatten", ["x"], ["y"], axis=2)], [N, 2, 3, 4]),
    "Reshape-zero-minus-one": graph([helper.make_node("Reshape", ["x", "shape"], ["y"])], [N, 2, 3, 4],
                                    [i64([0, -1, 4], "shape")]),
    "Transpose-Concat": graph([helper.make_node("Transpose", ["x"], ["t"], perm=[0, 2, 1]),
                               helper.make_node("Concat", ["t", "t"], ["y"], axis=1)], [N, 3, 5]),
    "Gather-axis1-negative": graph([helper.make_node("Gather", ["x", "idx"], ["y"], axis=1)], [N, 5, 2],
                                   [i64([[0, -1], [2, 3]], "idx")]),
    "Gather-embedding": graph([helper.make_node("Gather", ["E", "x"], ["y"])], [N, 6], [w(11, 4, name="E")],
                              x_type=TensorProto.INT64),
    "Dropout-inference": graph([helper.make_node("Dropout", ["x", "ratio"], ["y"])], [N, 4],
                               [numpy_helper.from_array(np.array(0.5, np.float32), "ratio")]),
    "LSTM-bidirectional-initial-states": graph(
        [helper.make_node("LSTM", ["x", "W", "R", "B", "", "h0", "c0"], ["Y", "Yh", "Yc"], hidden_size=3,
                          direction="bidirectional"),
         helper.make_node("Transpose", ["Y"], ["y"], perm=[2, 0, 1, 3])],
        [5, 2, 4], [w(2, 12, 4, name="W"), w(2, 12, 3, name="R"), w(2, 24, name="B"), w(2, 2, 3, name="h0"),
                    w(2, 2, 3, name="c0")], outputs=("y", "Yh", "Yc")),
    "LSTM-layout1-no-bias": graph([helper.make_node("LSTM", ["x", "W", "R"], ["Y", "Yh"], hidden_size=3, layout=1),
                                   helper.make_node("Identity", ["Y"], ["y"])],
                                  [N, 6, 4], [w(1, 12, 4, name="W"), w(1, 12, 3, name="R")], outputs=("y", "Yh")),
    "Shape-arithmetic": graph([helper.make_node("Shape", ["x"], ["s"]),
                               helper.make_node("Gather", ["s", "zero"], ["n"]),
                               helper.make_node("Unsqueeze", ["n", "axes"], ["n1"]),
                               helper.make_node("Concat", ["n1", "minus1"], ["shape"], axis=0),
                               helper.make_node("Reshape", ["x", "shape"], ["r"]),
                               helper.make_node("ReduceMean", ["r"], ["y"], axes=[1], keepdims=0)],
                              [N, 3, 4], [i64(0, "zero"), i64([0], "axes"), i64([-1], "minus1")]),
    "Slice-Squeeze-Unsqueeze-Split": graph(
        [helper.make_node("Slice", ["x", "st", "en", "ax", "sp"], ["s"]),
         helper.make_node("Split", ["s"], ["a", "b"], axis=2),
         helper.make_node("Sub", ["a", "b"], ["d"]),
         helper.make_node("Unsqueeze", ["d", "ax0"], ["u"]), helper.make_node("Squeeze", ["u", "ax0"], ["y"])],
        [N, 6, 4], [i64([1, 0], "st"), i64([6, 4], "en"), i64([1, 2], "ax"), i64([2, 1], "sp"), i64([0], "ax0")]),
    "Expand-Where-Equal-Pow-Div-Sqrt": graph(
        [helper.make_node("Expand", ["b", "shape"], ["e"]),
         helper.make_node("Equal", ["x", "x"], ["same"]),
         helper.make_node("Pow", ["x", "two"], ["sq"]), helper.make_node("Add", ["sq", "e"], ["s"]),
         helper.make_node("Sqrt", ["s"], ["r"]), helper.make_node("Div", ["x", "r"], ["q"]),
         helper.make_node("Where", ["same", "q", "x"], ["y"])],
        [N, 4], [numpy_helper.from_array(np.full((1, 1), 1.5, np.float32), "b"), i64([1, 4], "shape"),
                 numpy_helper.from_array(np.array(2.0, np.float32), "two")]),
    "LayerNormalization-GlobalAveragePool": graph(
        [helper.make_node("GlobalAveragePool", ["x"], ["g"]),
         helper.make_node("Flatten", ["g"], ["f"]),
         helper.make_node("LayerNormalization", ["f", "s", "b"], ["y"], epsilon=1e-4)],
        [N, 6, 3, 3], [w(6, name="s"), w(6, name="b")]),
    "Pad-reflect-edge": graph([helper.make_node("Pad", ["x", "p1"], ["a"], mode="reflect"),
                               helper.make_node("Pad", ["a", "p2"], ["y"], mode="edge")],
                              [N, 2, 5, 5], [i64([0, 0, 1, 2, 0, 0, 2, 1], "p1"), i64([0, 0, 0, 1, 0, 0, 1, 0], "p2")]),
    "ConvTranspose-strided-output-padding": graph(
        [helper.make_node("ConvTranspose", ["x", "W", "B"], ["y"], strides=[2, 2], pads=[1, 0, 1, 0],
                          output_padding=[1, 1], group=2)], [N, 4, 3, 3], [w(4, 3, 3, 2, name="W"), w(6, name="B")]),
    "PRelu-Elu-Selu-Softplus-HardSigmoid-Max-Min-Sum-Tile": graph(
        [helper.make_node("PRelu", ["x", "slope"], ["p"]), helper.make_node("Elu", ["x"], ["e"], alpha=0.7),
         helper.make_node("Selu", ["x"], ["s"]), helper.make_node("Softplus", ["x"], ["sp"]),
         helper.make_node("HardSigmoid", ["x"], ["h"], alpha=0.3), helper.make_node("Max", ["p", "e", "s"], ["mx"]),
         helper.make_node("Min", ["sp", "h"], ["mn"]), helper.make_node("Sum", ["mx", "mn", "x"], ["t"]),
         helper.make_node("Tile", ["t", "reps"], ["y"])],
        [N, 3, 2], [w(3, 1, name="slope"), i64([1, 2, 3], "reps")]),
    # the token LSTMs' padding ops (graphs/_padding.py): comparisons against a row's max/min (ties
    # included: x equals its own max), Not, and GatherElements with negative indices
    "ReduceMax-ReduceMin-Less-Greater-Not-Equal": graph(
        [helper.make_node("ReduceMax", ["x"], ["mx"], axes=[1]), helper.make_node("ReduceMin", ["x"], ["mn"], axes=[1]),
         helper.make_node("Less", ["x", "mx"], ["lt"]), helper.make_node("Not", ["lt"], ["at_max"]),
         helper.make_node("Greater", ["x", "mn"], ["gt"]), helper.make_node("Equal", ["x", "mn"], ["at_min"]),
         helper.make_node("Cast", ["at_max"], ["a"], to=TensorProto.FLOAT),
         helper.make_node("Cast", ["gt"], ["g"], to=TensorProto.FLOAT),
         helper.make_node("Cast", ["at_min"], ["e"], to=TensorProto.FLOAT),
         helper.make_node("Sum", ["a", "g", "e", "mx"], ["s"]),
         helper.make_node("ReduceMax", ["x"], ["all"], keepdims=0), helper.make_node("Add", ["s", "all"], ["y"])],
        [N, 5]),
    "ReduceMax-axes-input-opset18": graph([helper.make_node("ReduceMax", ["x", "ax"], ["y"], keepdims=0)], [N, 3, 4],
                                          [i64([-1], "ax")], opset=18),
    "GatherElements-axis1-negative": graph([helper.make_node("GatherElements", ["x", "idx"], ["y"], axis=1)], [N, 4, 3],
                                           [i64([[[0, -1, 2], [3, -4, 1]]], "idx")]),
    "InstanceNormalization": graph([helper.make_node("InstanceNormalization", ["x", "s", "b"], ["y"], epsilon=1e-3)],
                                   [N, 3, 4, 5], [w(3, name="s"), w(3, name="b")]),
}


def test_the_supported_set_is_what_the_interpreter_implements():
    assert SUPPORTED_OPS == set(OPS) | {"Constant"}
    issue_list = {"Gemm", "MatMul", "Add", "Mul", "Conv", "MaxPool", "AveragePool", "BatchNormalization", "Relu",
                  "Tanh", "Sigmoid", "Softmax", "Flatten", "Reshape", "Transpose", "Concat", "Gather", "LSTM", "Dropout"}
    assert issue_list <= SUPPORTED_OPS


@pytest.mark.parametrize("name", list(CASES))
def test_op_matches_onnxruntime(name):
    model = CASES[name]
    check_supported(model)
    feeds = random_feeds(model, batch=3, seed=1)
    expected, _ = run("onnx", model, feeds)
    got, _ = run("module", to_torch_module(model).eval(), feeds)
    assert len(got) == len(expected)
    for a, b in zip(expected, got):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["Shape-arithmetic", "Conv-auto-pad-same-lower", "Gather-embedding"])
def test_exported_program_keeps_the_batch_dynamic(name, tmp_path):
    save_model(CASES[name], tmp_path / "m.onnx")
    report = convert(tmp_path / "m.onnx", tmp_path / "m.pt2")
    assert report["max_abs_diff"] < 1e-5 and report["verify_inputs"]["x"][0] == 3
    assert 0 in report["dynamic_dims"]["x"]


def test_unsupported_lstm_forms_are_named():
    model = graph([helper.make_node("LSTM", ["x", "W", "R"], ["Y"], hidden_size=3, direction="reverse", name="rev"),
                   helper.make_node("Identity", ["Y"], ["y"])], [5, 2, 4], [w(1, 12, 4, name="W"), w(1, 12, 3, name="R")])
    with pytest.raises(ConversionError, match=r"LSTM with direction=reverse \(node 'rev'\)"):
        check_supported(model)


def test_module_parameters_are_named_after_initialisers():
    model = CASES["BatchNormalization"]
    module = to_torch_module(model)
    assert sorted(n for n, _ in module.named_parameters()) == ["b", "s"]
    assert sorted(n for n, _ in module.named_buffers()) == ["m", "v"]   # running statistics, as nn.BatchNorm
    assert torch.equal(module.s, torch.from_numpy(numpy_helper.to_array(model.graph.initializer[0])))


def test_awkward_initialiser_names_survive_a_round_trip(tmp_path):
    """Names that are not identifiers, clash with nn.Module attributes, or are both a tensor and a
    prefix ("a" and "a.b") come back unchanged from a trip through PyTorch."""
    names = ["a", "a.b", "forward.W", "onnx::Gemm_12", "7.weight"]
    nodes = [helper.make_node("Mul", ["x", "a"], ["m0"]), helper.make_node("Add", ["m0", "a.b"], ["m1"]),
             helper.make_node("Mul", ["m1", "forward.W"], ["m2"]), helper.make_node("Add", ["m2", "onnx::Gemm_12"], ["m3"]),
             helper.make_node("Mul", ["m3", "7.weight"], ["y"])]
    model = graph(nodes, [N, 3], [w(3, name=n) for n in names])
    module = to_torch_module(model)
    assert len(dict(module.named_parameters())) == 5
    save_model(model, tmp_path / "m.onnx")
    assert convert(tmp_path / "m.onnx", tmp_path / "m.pt2")["max_abs_diff"] < 1e-6
    assert convert(tmp_path / "m.pt2", tmp_path / "back.onnx")["max_abs_diff"] < 1e-6
    import onnx

    assert sorted(t.name for t in onnx.load(tmp_path / "back.onnx").graph.initializer) == sorted(names)
