"""Relu in training graphs as x * Cast(x > 0): same values as Relu, same training as PyTorch."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper
from onnx.reference import ReferenceEvaluator

from onnxforge.graphs import mlp
from onnxforge.runtime import Trainer
from onnxforge.runtime.passes.relu_mask import relu_as_mask


def _relu_model(elem=TensorProto.FLOAT):
    g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"], name="act")], "g",
                          [helper.make_tensor_value_info("x", elem, [None, 3])],
                          [helper.make_tensor_value_info("y", elem, [None, 3])])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def test_same_values_as_relu():
    x = np.array([[-2.0, 0.0, 3.5], [1e-30, -1e-30, np.nan]], np.float32)
    got = ReferenceEvaluator(relu_as_mask(_relu_model())).run(None, {"x": x})[0]
    np.testing.assert_array_equal(got, np.maximum(x, 0))  # NaN stays NaN, as in Relu
    assert got.dtype == np.float32


def test_only_float_relus_are_rewritten():
    rewritten = relu_as_mask(_relu_model())
    assert [n.op_type for n in rewritten.graph.node] == ["Greater", "Cast", "Mul"]
    assert rewritten.graph.node[-1].output[0] == "y"
    kept = relu_as_mask(_relu_model(TensorProto.INT32))
    assert [n.op_type for n in kept.graph.node] == ["Relu"]


@pytest.mark.artifacts
def test_the_artifacts_are_generated_from_a_graph_without_relu(tmp_path):
    # the rewrite is the artifacts backend's (ORT 1.19's ReluGrad kernel is the slow one); the onnx
    # backend's own Relu rule is already a Mul by a mask
    trainer = Trainer(mlp(6, [8], 3), tmp_path / "run", backend="artifacts", progress=False)
    assert "Relu" not in {n.op_type for n in trainer.training_graph().graph.node}


def test_the_inference_model_keeps_relu(tmp_path, training_backend):
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((32, 6)).astype(np.float32), rng.integers(0, 3, 32)
    trainer = Trainer(mlp(6, [8], 3), tmp_path / "run", backend=training_backend, progress=False)
    trainer.fit((x, y), epochs=1, batch_size=8)
    assert "Relu" in {n.op_type for n in trainer.inference_model().graph.node}
