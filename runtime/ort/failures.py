"""ONNX Runtime's failures while it loads or runs a graph, read as one line.

ORT raises ``RuntimeError`` (IOBinding runs, the training API) or its own pybind classes (``Fail``,
``InvalidArgument``, ``RuntimeException``... which derive from ``Exception`` only), with C++ text
that may span lines. Callers catch :func:`run_errors` and raise their onnxforge error with
:func:`failure_line`, e.g. ``TrainingError(f"training step 3 failed in ONNX Runtime at {line}")``.
"""

from __future__ import annotations

import re

from onnxforge.runtime.errors import first_line
from onnxforge.runtime.ort.distribution import ort

__all__ = ["failure_line", "run_errors"]

_CLASSES = ("Fail", "InvalidArgument", "RuntimeException", "InvalidGraph", "NotImplemented", "NoSuchFile",
            "NoModel", "EngineError", "InvalidProtobuf", "ModelLoaded", "EPFail")
# "Non-zero status code returned while running ScatterND node. Name:'grad/x' Status Message: ..."
_NODE = re.compile(r"running (\S+) node\. Name:'([^']*)' Status Message: (.*)")
_CODE = re.compile(r"\[ONNXRuntimeError\] : \d+ : \w+ : ")
# "/onnxruntime_src/.../reshape_helper.h:45 onnxruntime::ReshapeHelper::ReshapeHelper(...) a == b was false. "
_WHERE = re.compile(r"^\S+\.(?:cc|cpp|h|hpp):\d+ (?:[^()\s]*\([^()]*\)(?: const)? )?(?:.*? was false\. )?")


def run_errors() -> tuple[type[BaseException], ...]:
    """The exception types ONNX Runtime raises from a session's creation or run."""
    state = ort().capi.onnxruntime_pybind11_state
    return (RuntimeError, *(getattr(state, n) for n in _CLASSES if isinstance(getattr(state, n, None), type)))


def failure_line(exc: BaseException) -> str:
    """``OP node 'NAME': MESSAGE`` when ORT names the failing node, else its message's first
    line; without ORT's ``[ONNXRuntimeError] : 2 : INVALID_ARGUMENT :`` prefixes and the C++
    source location, function and failed condition it puts before the message."""
    text = _CODE.split(str(exc).strip())[-1]  # the innermost status: what ORT's wrappers wrapped
    found = _NODE.search(text)
    if found:
        op, node, message = found.groups()
        return f"{op} node '{node}': {_WHERE.sub('', message.strip())}"
    return first_line(exc, _WHERE.sub("", text.removeprefix("Error in execution: ").strip()), limit=None)
