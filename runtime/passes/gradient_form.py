"""Which ops ONNX Runtime training can differentiate, and the node forms its gradient builders
need. The op lists were measured against onnxruntime-training 1.19.2 (see the shared notes and
``tests/runtime/test_gradients.py``, which re-checks them against the installed runtime)."""

from __future__ import annotations

from onnx import ModelProto, TensorProto

TRAINING_MODE = "training_mode"  # the bool initialiser the trainer flips on for the training graph

__all__ = ["GRADIENT_OPS", "STOP_GRADIENT_OPS", "untrainable_ops", "prepare_for_gradients", "state_buffers"]

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


def prepare_for_gradients(model: ModelProto) -> ModelProto:
    """Give nodes the optional inputs/outputs ORT's gradient builders index into (in place).

    LSTM: inputs listed up to ``initial_c`` (7, absent ones empty). Dropout: the ``mask`` output.
    Relu: rewritten as ``x * Cast(x > 0)`` (the same function with a faster gradient).
    """
    for node in model.graph.node:
        if node.op_type == "LSTM" and node.domain in ("", "ai.onnx"):
            while len(node.input) < 7:
                node.input.append("")
        elif node.op_type == "Dropout" and len(node.output) < 2:
            node.output.append(f"{node.name or node.output[0]}.mask")
    from onnxforge.runtime.passes.relu_mask import relu_as_mask

    return relu_as_mask(model)  # ORT's ReluGrad is slow: Relu as x * (x > 0), see _relu_gradient


def trainable_parameters(model: ModelProto) -> list[str]:
    """Names of the float initialisers of ``model`` (the candidates for training)."""
    return [t.name for t in model.graph.initializer
            if t.data_type == TensorProto.FLOAT and t.name != TRAINING_MODE and len(t.dims) > 0]
