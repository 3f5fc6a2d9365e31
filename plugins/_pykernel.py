"""Python kernels through onnxruntime-extensions.

onnxruntime-extensions runs Python functions as ops of the domain ``ai.onnx.contrib`` only, and a
Python exception escaping one aborts the whole process. So each plugin op with a kernel is
registered there once under a mangled type (``<domain>__<Name>__<signature>``), the model's nodes
are rewritten to it just before ONNX Runtime loads them, and the registered function is a
dispatcher that never lets an exception out: it records it, returns empty outputs, and
:class:`kernel_guard` turns the record into a :class:`PluginError` after the run, leaving the
session usable.
"""

from __future__ import annotations

import hashlib
import threading

import numpy as np

from onnxforge.plugins._declaration import PYTHON_KERNEL_DOMAIN, Op
from onnxforge.runtime.errors import PluginError
from onnxforge.runtime.ort.distribution import ort

_NUMPY = {"float": np.float32, "double": np.float64, "int64": np.int64, "int32": np.int32, "bool": np.bool_,
          "string": np.object_}
_lock = threading.Lock()
_current: dict[str, Op] = {}  # mangled op type -> the op whose kernel it runs now
_pending = threading.local()


def extensions():
    """The onnxruntime_extensions module (imported after ONNX Runtime, without torch)."""
    ort()
    try:
        import onnxruntime_extensions
    except ImportError:
        raise PluginError(
            "Python-kernel ops need the onnxruntime-extensions package, which is not installed; "
            "pip install 'onnxruntime-extensions==0.15.2' (onnxforge's cpu extra brings it)"
        ) from None
    return onnxruntime_extensions


def op_type(op: Op) -> str:
    """The mangled op type the kernel of ``op`` runs under in ``ai.onnx.contrib``."""
    signature = repr(([p.type for p in op.inputs], [p.type for p in op.outputs],
                      sorted((k, type(v).__name__) for k, v in op.attributes.items())))
    digest = hashlib.sha1(signature.encode()).hexdigest()[:8]
    return f"{op.domain.replace('.', '_')}__{op.name}__{digest}"


def _dispatcher(mangled: str):
    def dispatch(*arrays, **attrs):
        op = _current[mangled]
        try:
            result = op.kernel(*arrays, **attrs)
            values = result if isinstance(result, tuple) else (result,)
            if len(values) != len(op.outputs):
                raise PluginError(f"it returned {len(values)} outputs; the op declares {len(op.outputs)}")
            out = tuple(np.asarray(v, dtype=_NUMPY[p.type]) for v, p in zip(values, op.outputs))
        except BaseException as exc:  # noqa: BLE001 - nothing may escape into native code
            _pending.error = (op, exc)
            out = tuple(np.zeros(0, dtype=_NUMPY[p.type]) for p in op.outputs)
        return out if len(out) > 1 else out[0]

    dispatch.__name__ = mangled
    return dispatch


# onnxruntime-extensions keeps registered kernels in a C++ vector and hands ONNX Runtime pointers
# into it: when the vector grows past its capacity every session created before crashes. So the
# first registration pads the table to just past a power of two (capacity: the next one) and later
# registrations only use that headroom.
_HEADROOM = 32
_capacity: int | None = None


def _table_size(ext) -> int:
    from onnxruntime_extensions._ocos import Opdef

    return len(Opdef._odlist)


def _reserve(ext) -> None:
    global _capacity
    size = _table_size(ext)
    half = 1
    while half + 1 < size or 2 * half - (half + 1) < _HEADROOM:
        half *= 2
    dt = ext.PyOp
    for i in range(half + 1 - size):
        ext.onnx_op(op_type=f"onnxforge_reserved_{i}", inputs=[dt.dt_float], outputs=[dt.dt_float])(_identity)
    _capacity = 2 * half


def _identity(x):
    return x


def ensure_registered(op: Op) -> str:
    """Register ``op``'s kernel with onnxruntime-extensions (once per signature); return its type."""
    mangled = op_type(op)
    with _lock:
        if mangled not in _current:
            ext = extensions()
            if _capacity is None:
                _reserve(ext)
            if _table_size(ext) >= (_capacity or 0):
                raise PluginError(
                    f"cannot register the Python kernel of op {op.qualified_name}: onnxruntime-extensions holds at "
                    f"most {_capacity} kernels per process once sessions use them; start a new process"
                )
            dt = ext.PyOp
            types = {"float": dt.dt_float, "double": dt.dt_double, "int64": dt.dt_int64, "int32": dt.dt_int32,
                     "bool": dt.dt_bool, "string": dt.dt_string}
            attr_types = {k: dt.dt_float if isinstance(v, float) else dt.dt_int64 if isinstance(v, int) else dt.dt_string
                          for k, v in op.attributes.items()}
            ext.onnx_op(op_type=mangled, domain=PYTHON_KERNEL_DOMAIN, inputs=[types[p.type] for p in op.inputs],
                        outputs=[types[p.type] for p in op.outputs], attrs=attr_types)(_dispatcher(mangled))
        _current[mangled] = op
    return mangled


def library_path() -> str:
    return extensions().get_library_path()


class kernel_guard:
    """Around a session run: a Python kernel that failed becomes one clear :class:`PluginError`."""

    def __init__(self, owner=None):
        self.owner = owner  # callable op -> plugin name, for the message

    def __enter__(self):
        _pending.error = None
        return self

    def __exit__(self, exc_type, exc, tb):
        pending = getattr(_pending, "error", None)
        _pending.error = None
        if pending is None:
            return False
        op, error = pending
        if not isinstance(error, Exception):  # KeyboardInterrupt, SystemExit: keep their meaning
            raise error
        plugin = f" (plugin {self.owner(op)!r})" if self.owner else ""
        raise PluginError(
            f"the Python kernel of op {op.qualified_name}{plugin} raised {type(error).__name__}: {error}; "
            "the session is still usable"
        ) from error
