"""The single-neuron example of the deep-learning review, through the real training path.

One ReLU unit y = relu(w * x), input x = 2, weight w = 0.3, target t = 1, error E = 1/2 (y - t)^2:
dE/dw = (y - t) * x = (0.6 - 1) * 2 = -0.8, so one SGD step of rate eta gives w = 0.3 + 0.8 eta.
"""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnxforge.runtime import Trainer


def single_neuron(w: float = 0.3):
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["z"]), helper.make_node("Relu", ["z"], ["y"])],
        "neuron",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 1])],
        [numpy_helper.from_array(np.array([[w]], np.float32), "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


@pytest.mark.parametrize("eta", [0.1, 0.5])
def test_one_sgd_step_moves_w_by_0_8_eta(tmp_path, eta):
    trainer = Trainer(single_neuron(), tmp_path / "run", loss="mse", optimizer="sgd", lr=eta,
                      device="cpu", progress=False)
    x = np.array([[2.0]], np.float32)
    t = np.array([[1.0]], np.float32)
    before = trainer.evaluate((x, t))
    assert before["loss"] == pytest.approx(0.5 * (0.6 - 1.0) ** 2, abs=1e-7)  # E = 1/2 (y - t)^2 = 0.08
    history = trainer.fit((x, t), epochs=1, batch_size=1, shuffle=False)
    assert history[0]["loss"] == pytest.approx(0.08, abs=1e-6)  # the loss the training graph computed
    w = trainer.parameters()["w"]
    assert w.shape == (1, 1)
    assert w[0, 0] == pytest.approx(0.3 + 0.8 * eta, abs=1e-6)
    # The exported model carries the updated weight.
    from onnxforge.runtime import load

    y = load(tmp_path / "run" / "model.onnx", device="cpu").run({"x": x})["y"]
    assert y[0, 0] == pytest.approx(2 * (0.3 + 0.8 * eta), abs=1e-5)
