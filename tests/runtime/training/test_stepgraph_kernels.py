"""stepgraph's kernel rewrites: each rewritten model computes what the original computes (ORT and
onnx.reference, against numpy), and the rewrite happens exactly where it should."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

from onnxforge.graphs import mlp
from onnxforge.runtime.ort.distribution import ort
from onnxforge.runtime.training.stepgraph import build_step
from onnxforge.runtime.training.stepgraph.kernels import faster_kernels

R = np.random.default_rng(0)


def _model(nodes, inputs, inits, outputs):
    """``outputs``: (name, dims) pairs."""
    graph = helper.make_graph(nodes, "k", [helper.make_tensor_value_info(n, TensorProto.FLOAT, d) for n, d in inputs],
                              [helper.make_tensor_value_info(o, TensorProto.FLOAT, d) for o, d in outputs],
                              [numpy_helper.from_array(v, n) for n, v in inits.items()])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


def _run(model, feeds):
    ref = ReferenceEvaluator(model).run(None, feeds)
    got = ort().InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)
    for a, b in zip(ref, got):
        np.testing.assert_allclose(b, a, rtol=1e-6, atol=1e-6)
    return got


def _sums():
    """ReduceSum over axis 0: of a 2-D batch-dynamic input (rewritten, twice on the same batch
    dim: one ones vector), of a 3-D input and with keepdims (both kept)."""
    nodes = [helper.make_node("ReduceSum", ["a", "ax0"], ["sa"], keepdims=0),
             helper.make_node("ReduceSum", ["b", "ax0"], ["sb"], keepdims=0),
             helper.make_node("ReduceSum", ["c", "ax0"], ["sc"], keepdims=0),
             helper.make_node("ReduceSum", ["a", "ax0"], ["sk"], keepdims=1)]
    return _model(nodes, [("a", ["N", 7]), ("b", ["N", 3]), ("c", ["N", 2, 3])], {"ax0": np.array([0], np.int64)},
                  [("sa", [7]), ("sb", [3]), ("sc", [2, 3]), ("sk", [1, 7])])


def test_batch_sums_become_a_matmul_by_ones_with_the_same_values():
    model = _sums()
    rewritten = faster_kernels(_sums())
    onnx.checker.check_model(rewritten, full_check=True)
    ops = [n.op_type for n in rewritten.graph.node]
    assert ops.count("MatMul") == 2 and ops.count("ReduceSum") == 2 and ops.count("ConstantOfShape") == 1
    feeds = {"a": R.standard_normal((5, 7)).astype(np.float32), "b": R.standard_normal((5, 3)).astype(np.float32),
             "c": R.standard_normal((5, 2, 3)).astype(np.float32)}
    expected = [feeds["a"].sum(0), feeds["b"].sum(0), feeds["c"].sum(0), feeds["a"].sum(0, keepdims=True)]
    for got, want, before in zip(_run(rewritten, feeds), expected, _run(model, feeds)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
        assert got.shape == before.shape


def test_masked_gradient_where_becomes_a_multiplication():
    model = _model([helper.make_node("Greater", ["x", "zero"], ["c"]), helper.make_node("Where", ["c", "g", "zero"], ["o"])],
                   [("x", [4, 5]), ("g", [4, 5])], {"zero": np.array(0.0, np.float32)}, [("o", [4, 5])])
    rewritten = faster_kernels(onnx.ModelProto.FromString(model.SerializeToString()))
    assert "Where" not in {n.op_type for n in rewritten.graph.node}
    feeds = {"x": R.standard_normal((4, 5)).astype(np.float32), "g": R.standard_normal((4, 5)).astype(np.float32)}
    np.testing.assert_array_equal(_run(rewritten, feeds)[0], np.where(feeds["x"] > 0, feeds["g"], 0))


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_mlp_step_sums_its_bias_gradients_by_matmul(optimizer):
    step = build_step(mlp(6, [5], 3, seed=1), output="logits", loss="cross-entropy", optimizer=optimizer,
                      trainable=["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"], feed_shapes={"x": (4, 6)})
    ops = [n.op_type for n in step.model.graph.node]
    assert "ReduceSum" not in ops and ops.count("MatMul") == 2 and "Where" not in ops
