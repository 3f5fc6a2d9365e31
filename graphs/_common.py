"""Helpers shared by the builders: seeded initialisers, graph assembly, metadata, checking."""

from __future__ import annotations

import math

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from onnxforge.runtime.errors import ConfigError
from onnxforge.runtime.modelio.card import ModelCard
from onnxforge.runtime.modelio.protos import NodeWriter

OPSET = 17
IR_VERSION = 8
TRAINING_MODE = "training_mode"  # bool initialiser the trainer flips on for the training graph
BATCH = "N"


def he_normal(rng: np.random.Generator, shape: tuple, fan_in: int) -> np.ndarray:
    """He (Kaiming) normal initialisation for ReLU-family layers: std = sqrt(2 / fan_in)."""
    return (rng.standard_normal(shape) * math.sqrt(2.0 / fan_in)).astype(np.float32)


def xavier_uniform(rng: np.random.Generator, shape: tuple, fan_in: int, fan_out: int) -> np.ndarray:
    """Xavier (Glorot) uniform initialisation: U(-a, a) with a = sqrt(6 / (fan_in + fan_out))."""
    bound = math.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-bound, bound, shape).astype(np.float32)


def check_positive(name: str, value, *, allow_zero: bool = False) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < (0 if allow_zero else 1):
        raise ConfigError(f"{name} must be a {'non-negative' if allow_zero else 'positive'} integer; got {value!r}")
    return int(value)


def check_dropout(value) -> float:
    if not isinstance(value, (int, float)) or not 0.0 <= float(value) < 1.0:
        raise ConfigError(f"dropout must be a number in [0, 1); got {value!r}")
    return float(value)


class GraphBuilder(NodeWriter):
    """Collects nodes, initialisers and functions (the node writer of :mod:`~onnxforge.runtime.modelio.protos`),
    naming parameters hierarchically; seeded initialisers."""

    def __init__(self, seed: int = 0):
        super().__init__(OPSET)
        self.rng = np.random.default_rng(seed)
        self.functions: list = []
        self.opsets: dict[str, int] = {"": OPSET}
        self._has_training_mode = False

    def param(self, name: str, value: np.ndarray) -> str:
        return self.initializer(name, value)

    def constant(self, name: str, value) -> str:
        tensor = numpy_helper.from_array(np.asarray(value), name)
        return self.node("Constant", [], [name], name=f"{name}.const", value=tensor)

    def linear(self, prefix: str, x: str, fan_in: int, fan_out: int, *, init: str = "he", out: str | None = None) -> str:
        """``Gemm(x, W, b, transB=1)`` with ``W`` of shape [out, in] (PyTorch's layout)."""
        if init == "he":
            w = he_normal(self.rng, (fan_out, fan_in), fan_in)
        else:
            w = xavier_uniform(self.rng, (fan_out, fan_in), fan_in, fan_out)
        weight = self.param(f"{prefix}.weight", w)
        bias = self.param(f"{prefix}.bias", np.zeros(fan_out, np.float32))
        return self.node("Gemm", [x, weight, bias], [out or f"{prefix}.out"], name=prefix, transB=1)

    def training_mode(self) -> str:
        if not self._has_training_mode:
            self.param(TRAINING_MODE, np.array(False))
            self._has_training_mode = True
        return TRAINING_MODE

    def dropout(self, prefix: str, x: str, ratio: float) -> str:
        """``Dropout`` active only while training (the trainer turns ``training_mode`` on)."""
        if ratio <= 0:
            return x
        r = self.constant(f"{prefix}.ratio", np.array(ratio, np.float32))
        out, _ = self.node("Dropout", [x, r, self.training_mode()], [f"{prefix}.out", f"{prefix}.mask"], name=prefix)
        return out

    def _live(self, outputs: list) -> list:
        """The nodes the outputs depend on. A builder may make values a configuration never reads
        (an unrolled LSTM's stacked states under a sequence head); ONNX Runtime would still compute
        them, in training too. Initialisers (the parameters) are all kept."""
        needed = {o.name for o in outputs}
        live = []
        for n in reversed(self.nodes):
            if any(o in needed for o in n.output):
                live.append(n)
                needed.update(i for i in n.input if i)
        return live[::-1]

    def model(self, name: str, inputs: list, outputs: list, card: ModelCard, doc: str = "") -> onnx.ModelProto:
        graph = helper.make_graph(self._live(outputs), name, inputs, outputs, self.initializers)
        model = helper.make_model(
            graph,
            opset_imports=[helper.make_opsetid(d, v) for d, v in self.opsets.items()],
            functions=self.functions,
            producer_name="onnxforge",
            doc_string=doc,
        )
        model.ir_version = IR_VERSION
        card.write_into(model)
        onnx.checker.check_model(model, full_check=True)
        return model


def float_input(name: str, dims: list) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, dims)


def int_input(name: str, dims: list) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.INT64, dims)
