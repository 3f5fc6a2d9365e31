"""The multi-layer perceptron: ``Gemm`` layers with a non-linearity between them."""

from __future__ import annotations

from collections.abc import Sequence

import onnx

from onnxforge.graphs import _activation
from onnxforge.graphs._common import BATCH, GraphBuilder, check_dropout, check_positive, float_input
from onnxforge.runtime.errors import ConfigError
from onnxforge.runtime.modelio.card import ModelCard

TASKS = ("classification", "regression")


def mlp(
    in_features: int,
    hidden: int | Sequence[int],
    out_features: int,
    *,
    activation: str = "relu",
    dropout: float = 0.0,
    seed: int = 0,
    task: str = "classification",
) -> onnx.ModelProto:
    """Build an MLP ``x [N, in_features] -> logits [N, out_features]``.

    Layers are ``fc1 .. fcK`` (``fcI.weight`` is [out, in], PyTorch's layout, ``fcI.bias``).
    Hidden layers use He initialisation for ReLU-like activations and Xavier otherwise; the output
    layer uses Xavier. ``dropout`` follows each hidden activation and is active only in training.
    ``task`` is "classification" (``out_features`` classes, cross-entropy) or "regression".
    """
    in_features = check_positive("in_features", in_features)
    out_features = check_positive("out_features", out_features)
    widths = [hidden] if isinstance(hidden, int) else list(hidden)
    widths = [check_positive("hidden layer width", w) for w in widths]
    dropout = check_dropout(dropout)
    if task not in TASKS:
        raise ConfigError(f"task must be one of {', '.join(TASKS)}; got {task!r}")
    if not isinstance(seed, int):
        raise ConfigError(f"seed must be an integer; got {seed!r}")

    b = GraphBuilder(seed)
    he = _activation.uses_he_init(activation.lower())
    x, fan_in = "x", in_features
    for i, width in enumerate(widths, start=1):
        x = b.linear(f"fc{i}", x, fan_in, width, init="he" if he else "xavier")
        x = _activation.apply(b, activation, x, f"act{i}")
        x = b.dropout(f"dropout{i}", x, dropout)
        fan_in = width
    last = f"fc{len(widths) + 1}"
    b.linear(last, x, fan_in, out_features, init="xavier", out="logits")

    card = ModelCard(
        task=task, builder="mlp", inputs=["x"], output="logits",
        args={"in_features": in_features, "hidden": widths, "out_features": out_features,
              "activation": activation, "dropout": dropout, "seed": seed, "task": task},
        classes=out_features if task == "classification" else None,
    )
    return b.model(
        "mlp",
        [float_input("x", [BATCH, in_features])],
        [float_input("logits", [BATCH, out_features])],
        card,
        doc=f"MLP {in_features}-{'-'.join(map(str, widths))}-{out_features} ({activation}), built by onnxforge",
    )

