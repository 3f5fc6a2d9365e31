"""The values the interpreter module passes between ops, and how ops read them.

A value is a ``torch.Tensor`` (data), a ``numpy.ndarray`` (a constant known when the module is
built) or a ``list``/``int`` of (symbolic) integers (a shape being computed, so that
``torch.export`` sees ``x.shape[0]`` and not a number).
"""

from __future__ import annotations

import numpy as np
import torch

from onnxforge.runtime.modelio.dtypes import TYPES

__all__ = ["T", "ints"]

# ONNX element type -> torch dtype, from the one element-type table: ONNX Runtime's type names
# ("float", "double", "int64", "bfloat16", ...) are torch's names too; types torch lacks are left out
_DTYPES = {t.onnx: getattr(torch, t.ort[len("tensor("):-1]) for t in TYPES
           if isinstance(getattr(torch, t.ort[len("tensor("):-1], None), torch.dtype)}


def _is_shape(v) -> bool:
    return isinstance(v, (list, int, torch.SymInt))


def T(v) -> torch.Tensor:  # noqa: N802 - short: every rule reads its values through it
    """Any value as a tensor."""
    if isinstance(v, torch.Tensor):
        return v
    if isinstance(v, np.ndarray):
        return torch.from_numpy(np.array(v))
    return torch.tensor(v, dtype=torch.int64)


def ints(v) -> list:
    """A constant or shape value as a Python list of (symbolic) ints."""
    if isinstance(v, np.ndarray):
        return [int(i) for i in v.reshape(-1)]
    if isinstance(v, list):
        return v
    if isinstance(v, (int, torch.SymInt)):
        return [v]
    raise TypeError("expected a constant or a shape, got a tensor computed at run time")


def _const_or_shape(v) -> bool:
    return isinstance(v, np.ndarray) and v.dtype.kind in "iu" or _is_shape(v)


def _as_py(v):
    """A constant/shape value as Python ints (scalar or list)."""
    if isinstance(v, np.ndarray):
        return int(v) if v.ndim == 0 else [int(i) for i in v.reshape(-1)]
    return v
