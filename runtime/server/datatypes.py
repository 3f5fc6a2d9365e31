"""The Open Inference Protocol's tensor datatypes and numpy's, both ways."""

from __future__ import annotations

import numpy as np

from onnxforge.runtime.errors import InputError
from onnxforge.runtime.modelio.dtypes import PROTOCOL_TYPES

__all__ = ["DATATYPES", "datatype_of", "tensor_metadata"]

# Protocol datatype -> numpy dtype, from the one element-type table (BF16 has no numpy dtype and is
# not offered), in name order (the order error messages list them in)
DATATYPES = dict(sorted(PROTOCOL_TYPES.items()))
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
