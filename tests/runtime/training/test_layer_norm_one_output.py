"""A LayerNormalization written in its one-output form (what torch.onnx.export writes for nn.LayerNorm)
trains on both backends to the same weights: ONNX Runtime training 1.19's gradient builder indexes into
the Mean and InvStdDev outputs, which the gradient-forms pass declares."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnxforge.runtime import Trainer
from onnxforge.runtime.passes.gradient_form import gradient_forms


def _layer_norm_classifier() -> "onnx.ModelProto":  # noqa: F821 - onnx imported through helper
    rng = np.random.default_rng(3)
    inits = [numpy_helper.from_array((rng.standard_normal(shape) * 0.3).astype(np.float32), name)
             for name, shape in (("w1", (64, 16)), ("gamma", (16,)), ("beta", (16,)), ("w2", (16, 10)))]
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h"]),
             helper.make_node("LayerNormalization", ["h", "gamma", "beta"], ["n"], name="ln", axis=-1),
             helper.make_node("Tanh", ["n"], ["t"]),
             helper.make_node("MatMul", ["t", "w2"], ["scores"])]
    graph = helper.make_graph(nodes, "ln", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 64])],
                              [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["N", 10])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_the_one_output_layer_norm_gets_its_two_statistics_outputs():
    node = next(n for n in gradient_forms(_layer_norm_classifier()).graph.node if n.op_type == "LayerNormalization")
    assert list(node.output) == ["n", "ln.mean", "ln.inv_std_dev"]


@pytest.mark.artifacts
def test_both_backends_train_a_one_output_layer_norm_to_the_same_weights(tmp_path, digits):
    (x, y), _ = digits
    weights = {}
    for backend in ("artifacts", "onnx"):
        trainer = Trainer(_layer_norm_classifier(), tmp_path / backend, backend=backend, lr=0.05, optimizer="sgd",
                          device="cpu", progress=False, threads=1, seed=0)
        trainer.fit((x[:128], y[:128]), epochs=2, batch_size=32, shuffle=False)
        weights[backend] = trainer.parameters()
    for name, value in weights["onnx"].items():
        np.testing.assert_allclose(weights["artifacts"][name], value, atol=2e-5, err_msg=name)
    assert not np.allclose(weights["onnx"]["gamma"], 1.0)
