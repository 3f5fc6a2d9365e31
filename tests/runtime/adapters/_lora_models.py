"""Small classifiers with every kind of LoRA target, built with onnx.helper (no PyTorch), and their
data: ``x`` float32 [N, 8] -> 3 classes.

    h1 = relu(x @ W1 + b1)                 W1 [8, 16]   MatMul, used directly
    h2 = relu(h1 @ Transpose(W2) + b2)     W2 [16, 16]  stored [out, in], as nn.Linear (TorchScript)
    y  = Gemm(h2, W3, b3, transB=1, alpha) W3 [3, 16]   Gemm with transB
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def classifier(seed: int = 0, gemm_alpha: float = 1.0, tied: bool = False) -> onnx.ModelProto:
    rng = np.random.default_rng(seed)
    w = {"W1": rng.normal(0, 0.4, (8, 16)), "b1": rng.normal(0, 0.1, 16), "W2": rng.normal(0, 0.3, (16, 16)),
         "b2": rng.normal(0, 0.1, 16), "W3": rng.normal(0, 0.3, (3, 16)), "b3": np.zeros(3)}
    nodes = [helper.make_node("MatMul", ["x", "W1"], ["m1"]), helper.make_node("Add", ["m1", "b1"], ["a1"]),
             helper.make_node("Relu", ["a1"], ["h1"]),
             helper.make_node("Transpose", ["W2"], ["W2t"], perm=[1, 0]),
             helper.make_node("MatMul", ["h1", "W2t"], ["m2"]), helper.make_node("Add", ["m2", "b2"], ["a2"]),
             helper.make_node("Relu", ["a2"], ["h2"]),
             helper.make_node("Gemm", ["h2", "W3", "b3"], ["logits"], transB=1, alpha=gemm_alpha)]
    if tied:  # W1 also read by something that is not a MatMul weight use
        nodes.append(helper.make_node("ReduceSum", ["W1"], ["w1sum"], keepdims=0))
    graph = helper.make_graph(nodes, "clf", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 3])],
                              [numpy_helper.from_array(v.astype(np.float32), k) for k, v in w.items()])
    if tied:
        graph.output.append(helper.make_tensor_value_info("w1sum", TensorProto.FLOAT, []))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def data(n: int = 192, seed: int = 1):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 8)).astype(np.float32)
    y = (np.argmax(x[:, :3] + 0.5 * x[:, 3:6], axis=1)).astype(np.int64)
    return x, y


def weights(model: onnx.ModelProto) -> dict:
    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}


def forward(w: dict, x: np.ndarray, gemm_alpha: float = 1.0) -> np.ndarray:
    """The classifier in numpy (float64), for any W1/W2/W3 given."""
    h1 = np.maximum(x @ w["W1"] + w["b1"], 0)
    h2 = np.maximum(h1 @ w["W2"].T + w["b2"], 0)
    return gemm_alpha * h2 @ w["W3"].T + w["b3"]
