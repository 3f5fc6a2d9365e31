"""The one exception hierarchy of onnxforge.

Every error a user can cause is an :class:`OnnxforgeError`; the CLI prints its message as one
line and exits with the class's ``exit_code``: 2 for bad data or inputs (the same code click gives
a bad option: the user's input is wrong), 1 for everything else. Messages name the thing, what was
expected and what came.
"""

from __future__ import annotations

__all__ = [
    "OnnxforgeError",
    "RuntimeUnavailableError",
    "DeviceError",
    "ModelError",
    "UnsafeModelError",
    "NotTrainableError",
    "InputError",
    "DataError",
    "CheckpointError",
    "TrainingError",
    "ConfigError",
    "PluginError",
]


class OnnxforgeError(Exception):
    """Base of every error onnxforge raises on purpose."""

    exit_code = 1  # what the CLI exits with


class RuntimeUnavailableError(OnnxforgeError):
    """No usable ONNX Runtime (or no training API, or two distributions in one environment)."""


class DeviceError(OnnxforgeError):
    """The requested device (execution provider) cannot be used."""


class ModelError(OnnxforgeError):
    """A model file is missing, unreadable, invalid, or not what the operation needs."""


class UnsafeModelError(ModelError):
    """A model file asks for something onnxforge refuses to do, e.g. read data outside its folder."""


class NotTrainableError(ModelError):
    """A model cannot be trained here (ops without gradients, no float parameters, ...)."""


class InputError(OnnxforgeError, ValueError):
    """Feeds given to a session do not match the model's inputs."""

    exit_code = 2


class DataError(OnnxforgeError, ValueError):
    """A dataset is missing, empty, malformed or inconsistent with the model."""

    exit_code = 2


class CheckpointError(OnnxforgeError):
    """A checkpoint is missing, corrupt, or belongs to another run."""


class TrainingError(OnnxforgeError):
    """Training failed while running (e.g. the loss diverged to NaN)."""


class ConfigError(OnnxforgeError, ValueError):
    """An option value is invalid (unknown loss, optimizer, schedule, ...)."""


class PluginError(OnnxforgeError):
    """A plugin's op declaration is malformed or clashes with another, or its kernel failed."""


class ConversionError(ModelError):
    """A model cannot be converted: an op outside the supported set, a form the target cannot
    express, or a result that does not match its source."""
