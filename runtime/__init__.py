"""onnxforge.runtime: model files, ONNX Runtime, passes, inference, training, serving.

The package is a house of rooms, each a subpackage that owns one concern; a room imports only the
rooms below it (the layers contract in pyproject.toml, checked by ``lint-imports``):

    errors       the exception hierarchy, each with its exit code and HTTP status
    modelio      model files: safe load/save, external data, the model card, dtypes, weights
    (plugins, graphs: the packages onnxforge.plugins and onnxforge.graphs sit here)
    ort          the ONNX Runtime layer: distribution, devices, threads, IOBinding
    passes       model-to-model rewrites and the named pipelines
    autodiff     reverse-mode differentiation of ONNX graphs into standard ONNX
    inference    sessions, batched runs, decoding
    data         datasets and their checks
    tasks        what a model does (classify, regress, tag, translate): losses and metrics
    training     the Trainer, its backends, run folders, checkpoints
    convert      PyTorch <-> ONNX, opset upgrades
    server       the Open Inference Protocol v2 server
    benchmark    speed against raw ONNX Runtime and PyTorch

The names below are imported on first use, so that ``import onnxforge.runtime.errors`` (as graphs
and plugins do) does not pull in training or inference.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from onnxforge.runtime.errors import (
    CheckpointError,
    ConfigError,
    DataError,
    DeviceError,
    InputError,
    ModelError,
    NotTrainableError,
    OnnxforgeError,
    RuntimeUnavailableError,
    TrainingError,
    UnsafeModelError,
)

if TYPE_CHECKING:  # what type checkers and editors see: the names _LAZY imports on first use
    from onnxforge.runtime.data.datasets import Dataset, load_npz
    from onnxforge.runtime.inference.session import IOInfo, Session, load
    from onnxforge.runtime.ort.device import Device, resolve_device
    from onnxforge.runtime.ort.distribution import RuntimeInfo, runtime_info
    from onnxforge.runtime.training.trainer import Trainer

_LAZY = {
    "RuntimeInfo": "onnxforge.runtime.ort.distribution",
    "runtime_info": "onnxforge.runtime.ort.distribution",
    "Device": "onnxforge.runtime.ort.device",
    "resolve_device": "onnxforge.runtime.ort.device",
    "Dataset": "onnxforge.runtime.data.datasets",
    "load_npz": "onnxforge.runtime.data.datasets",
    "IOInfo": "onnxforge.runtime.inference.session",
    "Session": "onnxforge.runtime.inference.session",
    "load": "onnxforge.runtime.inference.session",
    "Trainer": "onnxforge.runtime.training.trainer",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'onnxforge.runtime' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


__all__ = [
    "CheckpointError", "ConfigError", "DataError", "Dataset", "Device", "DeviceError", "IOInfo",
    "InputError", "ModelError", "NotTrainableError", "OnnxforgeError", "RuntimeInfo",
    "RuntimeUnavailableError", "Session", "Trainer", "TrainingError", "UnsafeModelError", "load",
    "load_npz", "resolve_device", "runtime_info",
]
