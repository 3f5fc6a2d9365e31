"""The ONNX Runtime layer: devices, inference sessions, training, checkpoints."""

from onnxforge.runtime._ort import RuntimeInfo, runtime_info
from onnxforge.runtime.data import Dataset, load_npz
from onnxforge.runtime.device import Device, resolve_device
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
from onnxforge.runtime.session import IOInfo, Session, load
from onnxforge.runtime.trainer import Trainer

__all__ = [
    "CheckpointError", "ConfigError", "DataError", "Dataset", "Device", "DeviceError", "IOInfo",
    "InputError", "ModelError", "NotTrainableError", "OnnxforgeError", "RuntimeInfo",
    "RuntimeUnavailableError", "Session", "Trainer", "TrainingError", "UnsafeModelError", "load",
    "load_npz", "resolve_device", "runtime_info",
]
