"""The optional engines: each feature imports its engine here and, when it is missing, fails with
one line naming the extra that brings it."""

from __future__ import annotations

import importlib

from onnxforge.runtime.errors import OnnxforgeError, RuntimeUnavailableError

__all__ = ["require", "worker_error"]

_EXTRA = {"ray": "ray", "pyspark": "spark", "pyarrow": "spark", "pandas": "spark", "torch": "ray"}


def require(module: str, feature: str):
    """``module`` imported, or a :class:`RuntimeUnavailableError` naming the extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError:
        top = module.split(".")[0]
        extra = _EXTRA.get(top, top)
        raise RuntimeUnavailableError(f"{feature} needs {top}, which is not installed; install the '{extra}' extra: "
                                      f"pip install 'onnxforge[{extra}]'") from None


def worker_error(exc: BaseException | None) -> OnnxforgeError | None:
    """The onnxforge error a Ray task, actor or training worker raised, found in the chain Ray
    wraps it in (``RayTaskError.cause``, ``__cause__``), as a fresh error of the same class with
    its first line; ``None`` when the failure was something else (a killed worker, say)."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        cause = getattr(exc, "cause", None)
        if isinstance(exc, OnnxforgeError) and type(exc).__module__.startswith("onnxforge."):
            text = str(exc).strip().splitlines()
            return type(exc)(text[0] if text else type(exc).__name__)
        exc = cause if isinstance(cause, BaseException) else (exc.__cause__ or exc.__context__)
    return None
