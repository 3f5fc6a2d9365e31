"""The one exception hierarchy of onnxforge.

Every error a user can cause is an :class:`OnnxforgeError`. Each class carries the two codes it
stands for, as class attributes read in one place each:

- ``exit_code``: what the CLI exits with after printing the message as one line (``onnxforge.cli``'s
  group): 2 for bad data or inputs (the same code click gives a bad option: the user's input is
  wrong), 1 for everything else;
- ``http_status``: what the server answers (``onnxforge.runtime.server``'s exception handlers):
  400 for a request the client got wrong, 404 for what does not exist, 408 for a client too slow,
  503 for a server that cannot take the request now, 500 for the rest.

Messages name the thing, what was expected and what came.
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
    "ConversionError",
    "NotFoundError",
    "RequestTimeoutError",
    "ServerBusyError",
    "ForbiddenError",
    "UnauthorizedError",
    "RunTimeoutError",
    "first_line",
]


def first_line(exc: BaseException, text: str | None = None, limit: int | None = 200) -> str:
    """The first line of ``text`` (default: ``exc``'s message), stripped and cut at ``limit``
    characters, or ``exc``'s class name when there is none: what an error message quotes of a
    library's exception."""
    lines = (str(exc) if text is None else text).strip().splitlines()
    return lines[0][:limit] if lines else type(exc).__name__


class OnnxforgeError(Exception):
    """Base of every error onnxforge raises on purpose."""

    exit_code = 1  # what the CLI exits with
    http_status = 500  # what the server answers


class RuntimeUnavailableError(OnnxforgeError):
    """No usable ONNX Runtime (or no training API, or two distributions in one environment)."""

    http_status = 503


class DeviceError(OnnxforgeError):
    """The requested device (execution provider) cannot be used."""


class ModelError(OnnxforgeError):
    """A model file is missing, unreadable, invalid, or not what the operation needs."""


class UnsafeModelError(ModelError):
    """A model file asks for something onnxforge refuses to do, e.g. read data outside its folder."""


class NotTrainableError(ModelError):
    """A model cannot be trained here (ops without gradients, no float parameters, ...)."""


class InputError(OnnxforgeError, ValueError):
    """Feeds given to a session (or a request to the server) do not match the model's inputs."""

    exit_code = 2
    http_status = 400


class DataError(OnnxforgeError, ValueError):
    """A dataset is missing, empty, malformed or inconsistent with the model."""

    exit_code = 2
    http_status = 400


class CheckpointError(OnnxforgeError):
    """A checkpoint is missing, corrupt, or belongs to another run."""


class TrainingError(OnnxforgeError):
    """Training failed while running (e.g. the loss diverged to NaN)."""


class ConfigError(OnnxforgeError, ValueError):
    """An option value is invalid (unknown loss, optimizer, schedule, ...)."""

    http_status = 400


class PluginError(OnnxforgeError):
    """A plugin's op declaration is malformed or clashes with another, or its kernel failed."""


class ConversionError(ModelError):
    """A model cannot be converted: an op outside the supported set, a form the target cannot
    express, or a result that does not match its source."""


class NotFoundError(OnnxforgeError, LookupError):
    """A named thing (a served model, one of its versions, an endpoint) does not exist."""

    exit_code = 2
    http_status = 404


class RequestTimeoutError(OnnxforgeError):
    """A client did not send its request within the server's deadline."""

    http_status = 408


class ServerBusyError(OnnxforgeError):
    """The server cannot take the request now (its queue is full, it holds too many connections,
    or it is shutting down); the client may retry (``retry_after`` seconds)."""

    http_status = 503
    retry_after = 1


class ForbiddenError(OnnxforgeError):
    """The server refuses the request whoever sends it: a switched-off endpoint (repository
    control without ``--repository-control``), a Host or Origin it does not serve."""

    http_status = 403


class UnauthorizedError(OnnxforgeError):
    """The request lacks the credentials the endpoint asks for (``--repository-token``)."""

    http_status = 401


class RunTimeoutError(OnnxforgeError):
    """A model run (a warm-up, or a request's) passed its deadline and was stopped."""

    http_status = 504
