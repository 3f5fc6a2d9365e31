"""Custom ops that plugins add. The spine only needs the hooks below; sessions and trainers call
them on every model, so plugin support plugs in without touching the runtime."""

from __future__ import annotations

import importlib.metadata

from onnx import ModelProto

__all__ = ["activation_names", "activation_op", "installed_plugins", "prepare_inference", "prepare_training", "register_custom_ops"]

ENTRY_POINT_GROUP = "onnxforge.plugins"


def installed_plugins() -> list[str]:
    """Names of the plugins installed through the ``onnxforge.plugins`` entry-point group."""
    return sorted({ep.name for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)})


def prepare_inference(model: ModelProto) -> ModelProto:
    """Return the model as the inference session should load it."""
    return model


def register_custom_ops(model: ModelProto, options) -> None:
    """Register with ``options`` the custom-op libraries the model needs (none in the spine)."""


def prepare_training(model: ModelProto) -> ModelProto:
    """Return the model as training artifacts should be generated from it: local functions are
    inlined so that ONNX Runtime's gradient builders see standard ops."""
    if model.functions:
        from onnx import inliner

        model = inliner.inline_local_functions(model)
    return model




def activation_names() -> list[str]:
    """Names of plugin ops usable as activations (single float input and output)."""
    return []


def activation_op(name: str):
    """The plugin op called ``name``, usable as an activation, or ``None``."""
    return None
