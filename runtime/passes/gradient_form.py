"""Which ops ONNX Runtime training can differentiate, and the node forms its gradient builders
need. The op lists were measured against onnxruntime-training 1.19.2 (see the shared notes and
``tests/runtime/test_gradients.py``, which re-checks them against the installed runtime)."""

from __future__ import annotations

import numpy as np
from onnx import ModelProto, TensorProto, numpy_helper

from onnxforge.graphs import TRAINING_MODE  # the bool initialiser the trainer flips on for the training graph
from onnxforge.runtime.passes.base import FunctionalPass, PassResult, Rewrite, copy_model
from onnxforge.runtime.passes.relu_mask import relu_as_mask

__all__ = ["GRADIENT_OPS", "STOP_GRADIENT_OPS", "TRAINING_MODE", "GradientForms", "TrainingMode", "gradient_forms",
           "prepare_for_gradients", "state_buffers", "untrainable_ops", "with_training_mode"]

# Default-domain ops with a gradient builder in ORT training 1.19.
GRADIENT_OPS = frozenset({
    "Abs", "Add", "AveragePool", "BatchNormalization", "Cast", "Clip", "Concat", "Conv", "Cos", "Div",
    "Dropout", "Erf", "Exp", "Expand", "Flatten", "Gather", "GatherElements", "GatherND", "Gelu", "Gemm",
    "GlobalAveragePool", "Identity", "LSTM", "LayerNormalization", "LeakyRelu", "Log", "LogSoftmax",
    "MatMul", "Max", "MaxPool", "Min", "Mul", "Neg", "Pad", "Pow", "Reciprocal", "ReduceL2",
    "ReduceLogSumExp", "ReduceMean", "ReduceSum", "Relu", "Reshape", "Sigmoid", "Sin", "Slice",
    "Softmax", "SoftmaxCrossEntropyLoss", "Split", "Sqrt", "Squeeze", "Sub", "Tanh", "Tile",
    "Transpose", "Unsqueeze", "Where",
})

# Ops whose outputs carry no gradient (shapes, comparisons, indices): fine anywhere in a graph.
STOP_GRADIENT_OPS = frozenset({
    "ArgMax", "ArgMin", "Constant", "ConstantOfShape", "Equal", "Greater", "GreaterOrEqual", "Less",
    "LessOrEqual", "Not", "And", "Or", "NonZero", "Range", "Shape", "Size", "OneHot",
})


def _unsupported_form(node) -> str | None:
    """Why ORT 1.19 cannot train this form of an op it otherwise differentiates, or None.

    LSTM (measured on 1.19.2, each fails only when the training session is created): the LSTMGrad
    kernels run the forward direction only, with no ``clip``, ``input_forget``, ``sequence_lens``,
    batch-major ``layout`` or activations other than Sigmoid, Tanh, Tanh.
    """
    if node.op_type != "LSTM":
        return None
    from onnx import helper

    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    direction = attrs.get("direction", b"forward")
    direction = direction.decode() if isinstance(direction, bytes) else str(direction)
    if direction != "forward":
        return f"direction={direction} (only forward LSTMs can be trained; run the sequence reversed through a forward LSTM instead)"
    if "clip" in attrs:
        return "clip (LSTM cell clipping cannot be trained)"
    if attrs.get("input_forget", 0):
        return "input_forget=1 (coupled gates cannot be trained)"
    if attrs.get("layout", 0):
        return "layout=1 (batch-major LSTMs cannot be trained; transpose to time-major)"
    acts = [a.decode() if isinstance(a, bytes) else a for a in attrs.get("activations", [])]
    if acts and [a.lower() for a in acts] != ["sigmoid", "tanh", "tanh"]:
        return f"activations={','.join(acts)} (only Sigmoid, Tanh, Tanh can be trained)"
    if len(node.input) > 4 and node.input[4]:
        return "sequence_lens (pad sequences and mask the loss instead)"
    return None


def untrainable_ops(model: ModelProto, trainable: list[str]) -> list[str]:
    """Ops on a path from a trainable parameter that ORT cannot differentiate, as "Op (node)".

    ``model`` should already have its plugin functions inlined.
    """
    live = set(trainable)
    blockers = []
    for node in model.graph.node:  # nodes are topologically sorted in a valid model
        if not any(i in live for i in node.input):
            continue
        op = node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}.{node.op_type}"
        if op in STOP_GRADIENT_OPS:
            continue
        form = _unsupported_form(node) if op in GRADIENT_OPS else None
        if op not in GRADIENT_OPS or form:
            label = f"{op} ({node.name})" if node.name else op
            label += f" with {form}" if form else ""
            if label not in blockers:
                blockers.append(label)
        live.update(o for o in node.output if o)
    return blockers


def state_buffers(model: ModelProto) -> list[str]:
    """Initialisers that training updates as running state instead of learning: the running mean
    and variance of ``BatchNormalization`` nodes.

    ONNX Runtime training turns an inference-form ``BatchNormalization`` into its training form
    (batch statistics) and updates these tensors in place when they are passed as frozen
    parameters (measured on 1.19.2: ``running = momentum * running + (1 - momentum) * batch``,
    with the biased batch variance). They must not get gradients.
    """
    inits = {t.name for t in model.graph.initializer}
    names: list[str] = []
    for node in model.graph.node:
        if node.op_type == "BatchNormalization" and node.domain in ("", "ai.onnx"):
            for name in node.input[3:5]:
                if name in inits and name not in names:
                    names.append(name)
    return names


def gradient_forms(model: ModelProto) -> ModelProto:
    """``model`` with the optional inputs/outputs ORT's gradient builders index into (a new model;
    ``model`` itself when every node already has them).

    LSTM: inputs listed up to ``initial_c`` (7, absent ones empty). Dropout: the ``mask`` output.
    LayerNormalization: the ``Mean`` and ``InvStdDev`` outputs (ORT 1.19's builder indexes into them;
    exporters write the one-output form).
    """
    def lacking(node) -> bool:
        if node.domain not in ("", "ai.onnx"):
            return False
        return ((node.op_type == "LSTM" and len(node.input) < 7)
                or (node.op_type == "Dropout" and len(node.output) < 2)
                or (node.op_type == "LayerNormalization" and (len(node.output) < 3 or not all(node.output[1:3]))))

    if not any(lacking(n) for n in model.graph.node):
        return model
    out = copy_model(model)
    for node in out.graph.node:
        if not lacking(node):
            continue
        if node.op_type == "LSTM":
            node.input.extend([""] * (7 - len(node.input)))
        elif node.op_type == "LayerNormalization":
            stem = node.name or node.output[0]
            names = list(node.output) + [""] * (3 - len(node.output))
            names[1:3] = [names[1] or f"{stem}.mean", names[2] or f"{stem}.inv_std_dev"]
            del node.output[:]
            node.output.extend(names)
        else:
            node.output.append(f"{node.name or node.output[0]}.mask")
    return out


def prepare_for_gradients(model: ModelProto) -> ModelProto:
    """The gradient forms, then Relu as ``x * Cast(x > 0)`` (the same function with a faster
    gradient; see :mod:`.relu_mask`): a new model, ``model`` itself when nothing changed.
    The training pipeline (:mod:`.pipelines`) runs the two as separate passes."""
    return relu_as_mask(gradient_forms(model))


class GradientForms(Rewrite):
    """The pass of :func:`gradient_forms`."""

    name = "gradient-forms"
    function = staticmethod(gradient_forms)


def with_training_mode(model: ModelProto, on: bool) -> ModelProto:
    """``model`` with its ``training_mode`` initialiser (the builders' Dropout switch) set to ``on``:
    a new model, ``model`` itself when it has no such switch or it already is ``on``."""
    index = next((i for i, t in enumerate(model.graph.initializer) if t.name == TRAINING_MODE), None)
    if index is None:
        return model
    switch = model.graph.initializer[index]
    if switch.data_type == TensorProto.BOOL and numpy_helper.to_array(switch).tolist() == bool(on):
        return model
    out = copy_model(model)
    out.graph.initializer[index].CopyFrom(numpy_helper.from_array(np.array(bool(on)), TRAINING_MODE))
    return out


class TrainingMode(FunctionalPass):
    """The pass of :func:`with_training_mode`: ``TrainingMode(True)`` for what a trainer steps,
    ``TrainingMode(False)`` for what a run exports."""

    def __init__(self, on: bool):
        self.on = bool(on)
        self.name = "training-mode-on" if self.on else "training-mode-off"

    def call(self, model: ModelProto) -> PassResult:
        out = with_training_mode(model, self.on)
        return PassResult(out, out is not model)


def trainable_parameters(model: ModelProto) -> list[str]:
    """Names of the float initialisers of ``model`` (the candidates for training)."""
    return [t.name for t in model.graph.initializer
            if t.data_type == TensorProto.FLOAT and t.name != TRAINING_MODE and len(t.dims) > 0]
