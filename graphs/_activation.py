"""Activation functions by name: standard ONNX ops, or ops that installed plugins provide."""

from __future__ import annotations

from onnxforge.runtime.errors import ConfigError
from onnxforge import plugins

# name -> (ONNX op, attributes, whether He initialisation suits it). Only ops that ORT training
# can differentiate are listed; Elu, Selu and Softplus have no gradient builder in ORT 1.19.
STANDARD = {
    "relu": ("Relu", {}, True),
    "leaky_relu": ("LeakyRelu", {"alpha": 0.01}, True),
    "tanh": ("Tanh", {}, False),
    "sigmoid": ("Sigmoid", {}, False),
}


def available() -> list[str]:
    names = list(STANDARD)
    names += [n for n in plugins.activation_names() if n not in names]
    return names


def uses_he_init(name: str) -> bool:
    return STANDARD.get(name, (None, None, True))[2]


def apply(builder, name: str, x: str, prefix: str) -> str:
    """Append the activation ``name`` applied to ``x``; return its output name."""
    key = name.lower()
    if key in STANDARD:
        op, attrs, _ = STANDARD[key]
        return builder.node(op, [x], [f"{prefix}.out"], name=prefix, **attrs)
    op = plugins.activation_op(key)
    if op is None:
        raise ConfigError(f"unknown activation {name!r}; choose one of: {', '.join(available())}")
    return op.apply(builder, x, prefix)
