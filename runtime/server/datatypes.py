"""The Open Inference Protocol's tensor datatypes and numpy's, both ways."""

from __future__ import annotations

import numpy as np

from onnxforge.runtime.errors import InputError

__all__ = ["DATATYPES", "datatype_of", "tensor_metadata"]

# Protocol datatype -> numpy dtype (BF16 has no numpy dtype and is not offered).
DATATYPES = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype(np.uint8),
    "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32),
    "UINT64": np.dtype(np.uint64),
    "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16),
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
    "BYTES": np.dtype(object),
}
_BY_DTYPE = {v: k for k, v in DATATYPES.items()}


def datatype_of(dtype) -> str:
    """The protocol datatype of a numpy dtype (strings are BYTES)."""
    dtype = np.dtype(dtype)
    if dtype.kind in "OUS":
        return "BYTES"
    if dtype not in _BY_DTYPE:
        raise InputError(f"dtype {dtype.name} has no Open Inference Protocol datatype")
    return _BY_DTYPE[dtype]


def tensor_metadata(info) -> dict:
    """``{"name", "datatype", "shape"}`` of an :class:`IOInfo`, dynamic dimensions as -1."""
    return {"name": info.name, "datatype": datatype_of(info.dtype),
            "shape": [d if isinstance(d, int) else -1 for d in info.shape]}
