"""``backend="auto"``: which backend it picks for which model (runtime/training/backends)."""

from __future__ import annotations

from onnxforge.graphs import convnet, lstm, mlp
from onnxforge.runtime.training.backends import auto_order


def _names(model) -> list[str]:
    return [cls.name for cls in auto_order(model)]


def test_a_plain_mlp_prefers_the_artifacts_backend_where_it_is_listed_first():
    assert _names(mlp(8, [4], 3)) == ["artifacts", "onnx"]


def test_a_model_onnx_runtime_training_cannot_differentiate_goes_to_the_onnx_backend_first():
    model = mlp(8, [4], 3)
    for node in model.graph.node:
        if node.op_type == "Relu":
            node.op_type = "Softplus"   # no gradient builder in ONNX Runtime training 1.19
    assert _names(model) == ["onnx", "artifacts"]


def test_convnets_and_lstms_prefer_the_onnx_backend_measured_faster_for_them():
    assert _names(convnet((1, 8, 8), channels=(4, 6), classes=3)) == ["onnx", "artifacts"]
    assert _names(convnet((1, 8, 8), channels=(4,), classes=3, batchnorm=True)) == ["onnx", "artifacts"]
    assert _names(lstm(3, hidden=4, classes=2)) == ["onnx", "artifacts"]
