"""The ONNX vocabulary (modelio/protos.py): default opset, copies, subgraph walk, dims, node writer."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper
from onnx.reference import ReferenceEvaluator

from onnxforge.runtime.modelio.protos import (NodeWriter, copy_model, default_opset, dims, is_default_domain,
                                              static_dims, subgraphs, walk_graphs)


def _model(opsets):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, None])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3, None])
    branch = helper.make_graph([helper.make_node("Identity", ["x"], ["b"])], "then", [],
                               [helper.make_tensor_value_info("b", TensorProto.FLOAT, None)])
    inner = helper.make_graph([helper.make_node("If", ["c"], ["b2"], then_branch=branch, else_branch=branch)],
                              "body", [], [helper.make_tensor_value_info("b2", TensorProto.FLOAT, None)])
    node = helper.make_node("If", ["c"], ["y"], then_branch=inner, else_branch=branch)
    graph = helper.make_graph([node], "g", [x, helper.make_tensor_value_info("c", TensorProto.BOOL, [])], [y])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid(d, v) for d, v in opsets])


def test_default_opset_reads_either_spelling_and_says_when_there_is_none():
    assert default_opset(_model([("com.example", 1), ("ai.onnx", 15)])) == 15
    assert default_opset(_model([("", 17)])) == 17
    assert default_opset(_model([("com.example", 1)]), 0) == 0
    assert is_default_domain("") and is_default_domain("ai.onnx") and not is_default_domain("com.microsoft")


def test_copy_model_is_deep():
    model = _model([("", 17)])
    copy = copy_model(model)
    copy.graph.node[0].output[0] = "changed"
    assert model.graph.node[0].output[0] == "y" and copy == copy_model(copy)


def test_walk_graphs_visits_every_nested_graph_outermost_first():
    model = _model([("", 17)])
    names = [g.name for g in walk_graphs(model.graph)]  # attributes in name order: else_branch, then_branch
    assert names == ["g", "then", "body", "then", "then"]
    assert [g.name for g in subgraphs(model.graph.node[0])] == ["then", "body"]


def test_dims_keep_symbols_static_dims_only_numbers():
    x = _model([("", 17)]).graph.input[0]
    assert dims(x) == ("N", 3, None)
    assert static_dims(x) == (None, 3, None)


def test_node_writer_names_fresh_and_builds_a_checked_model():
    w = NodeWriter(17, prefix="p")
    assert [w.fresh("Add"), w.fresh("Add"), w.fresh("Mul")] == ["p/Add", "p/Add_1", "p/Mul"]
    two = w.initializer("two", np.float32(2.0))
    out = w.node("Mul", ["x", two], ["y"])
    assert out == "y" and w.node("Relu", ["y"]) == "p/Relu.out"
    graph = helper.make_graph(w.nodes, "w", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                              [helper.make_tensor_value_info("p/Relu.out", TensorProto.FLOAT, [2])], w.initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model, full_check=True)
    got = ReferenceEvaluator(model).run(None, {"x": np.array([-1.0, 3.0], np.float32)})[0]
    np.testing.assert_array_equal(got, np.maximum(np.array([-1.0, 3.0], np.float32) * 2, 0))
