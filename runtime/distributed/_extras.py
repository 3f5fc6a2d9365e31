"""The optional engines: each feature imports its engine here and, when it is missing, fails with
one line naming the extra that brings it."""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os

from onnxforge.runtime.errors import OnnxforgeError, RuntimeUnavailableError

__all__ = ["require", "worker_error", "init_ray", "quiet_engine_logs"]

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


# the engines' loggers that fill a terminal with INFO lines (Ray's driver, Ray Data's planner, Ray
# Train's controller, Spark's py4j gateway)
_LOGGERS = ("ray", "ray.data", "ray.train", "ray.tune", "ray.air", "py4j", "pyspark")


def quiet_engine_logs(verbose: bool = False) -> None:
    """Ray's and Spark's loggers at WARNING (INFO with ``verbose``), and no colour codes in the
    lines Ray forwards from its workers unless the terminal is one onnxforge's stderr writes to."""
    level = logging.INFO if verbose else logging.WARNING
    for name in _LOGGERS:
        logging.getLogger(name).setLevel(level)
    if not verbose:
        os.environ.setdefault("RAY_COLOR_PREFIX", "0")          # "(pid=...)" prefixes without ANSI colours


def init_ray(ray, address: str | None = None, *, verbose: bool = False, log_to_driver: bool = True) -> None:
    """Start (or join) Ray once, its own log lines at WARNING unless ``verbose``."""
    quiet_engine_logs(verbose)
    if ray.is_initialized():
        return
    ray.init(address=address or os.environ.get("RAY_ADDRESS"), include_dashboard=False,
             logging_level=logging.INFO if verbose else logging.WARNING, log_to_driver=log_to_driver or verbose,
             configure_logging=True)
    quiet_engine_logs(verbose)  # again: Ray Data sets up its loggers when it is imported
    if not verbose and importlib.util.find_spec("ray.data") is not None:
        try:
            import sys

            ctx = importlib.import_module("ray.data").DataContext.get_current()
            ctx.print_on_execution_start = False
            if not sys.stderr.isatty():  # bars only where a terminal shows them (no raw ANSI codes in logs)
                ctx.enable_progress_bars = False
                logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)  # "bars disabled": we chose it
        except (ImportError, AttributeError):
            pass
