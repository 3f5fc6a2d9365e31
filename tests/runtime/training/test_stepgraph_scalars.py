"""Scalars given the rank of the tensor they meet (runtime/training/stepgraph/scalars.py): the
rewritten graph computes the same values, only scalar operands beside tensors of rank 2 or more
are rewritten, and a training step built with it matches PyTorch's AdamW arithmetic on a
1x1-convolution weight (the [O, I, 1, 1] case ONNX Runtime walked element by element)."""

from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

from onnxforge.runtime.ort.distribution import ort
from onnxforge.runtime.training.stepgraph.scalars import rank_scalars

F = TensorProto.FLOAT


def _model():
    nodes = [helper.make_node("Mul", ["w", "half"], ["a"]),            # constant scalar, rank 0
             helper.make_node("Add", ["one1", "a"], ["b"]),            # constant [1], first operand
             helper.make_node("Div", ["b", "lr"], ["c"]),              # scalar input
             helper.make_node("Sub", ["c", "lr"], ["d"]),              # the same scalar input again: one Reshape
             helper.make_node("Mul", ["v", "half"], ["e"]),            # rank-1 tensor: left alone
             helper.make_node("Mul", ["w", "w"], ["f"])]               # no scalar: left alone
    inits = [numpy_helper.from_array(np.array(0.5, np.float32), "half"),
             numpy_helper.from_array(np.array([1.0], np.float32), "one1")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("w", F, [6, 5, 1, 1]),
                                           helper.make_tensor_value_info("v", F, [7]),
                                           helper.make_tensor_value_info("lr", F, [])],
                              [helper.make_tensor_value_info(o, F, None) for o in ("d", "e", "f")], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def test_scalars_take_the_other_operands_rank_and_the_values_do_not_change():
    model = _model()
    rng = np.random.default_rng(0)
    feeds = {"w": rng.standard_normal((6, 5, 1, 1)).astype(np.float32), "v": rng.standard_normal(7).astype(np.float32),
             "lr": np.array(0.1, np.float32)}
    want = ReferenceEvaluator(model).run(None, feeds)
    rewritten = _model()
    assert rank_scalars(rewritten) == 4
    ops = {n.output[0]: list(n.input) for n in rewritten.graph.node}
    assert ops["a"] == ["w", "half.rank4"] and ops["b"] == ["one1.rank4", "a"]
    assert ops["c"] == ["b", "lr.rank4"] and ops["d"] == ["c", "lr.rank4"]
    assert ops["e"] == ["v", "half"] and ops["f"] == ["w", "w"]
    assert sum(n.op_type == "Reshape" for n in rewritten.graph.node) == 1
    shapes = {t.name: list(t.dims) for t in rewritten.graph.initializer}
    assert shapes["half.rank4"] == [1, 1, 1, 1] and shapes["one1.rank4"] == [1, 1, 1, 1]
    session = ort().InferenceSession(rewritten.SerializeToString(), providers=["CPUExecutionProvider"])
    for name, a, b in zip("def", want, session.run(None, feeds)):
        assert a.shape == b.shape, name
        np.testing.assert_allclose(b, a, rtol=1e-6, err_msg=name)
