"""Element types: one table, each row an ONNX ``TensorProto`` type with its numpy dtype, its
ONNX Runtime type string, its Open Inference Protocol datatype and its size in bits.

Readers derive what they need from :data:`TYPES` (``ORT_TYPES`` for sessions, :func:`numpy_dtype`
and :func:`storage_bytes` for tensors in files, ``PROTOCOL_TYPES`` for the server, ``FLOAT_TYPES``
for differentiation)."""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from onnx import TensorProto

from onnxforge.runtime.errors import ModelError

__all__ = ["FLOAT_TYPES", "ORT_TYPES", "PROTOCOL_TYPES", "TYPES", "ElementType", "numpy_dtype", "storage_bytes"]


class ElementType(NamedTuple):
    onnx: int                 # TensorProto.DataType
    numpy: type | None        # numpy scalar type (None: numpy has none)
    ort: str                  # ONNX Runtime's type string
    protocol: str | None      # the Open Inference Protocol's datatype
    bits: int                 # storage size of one element (0: variable, strings)


_T = TensorProto
TYPES = (
    ElementType(_T.FLOAT, np.float32, "tensor(float)", "FP32", 32),
    ElementType(_T.DOUBLE, np.float64, "tensor(double)", "FP64", 64),
    ElementType(_T.FLOAT16, np.float16, "tensor(float16)", "FP16", 16),
    ElementType(_T.BFLOAT16, None, "tensor(bfloat16)", "BF16", 16),
    ElementType(_T.INT64, np.int64, "tensor(int64)", "INT64", 64),
    ElementType(_T.INT32, np.int32, "tensor(int32)", "INT32", 32),
    ElementType(_T.INT16, np.int16, "tensor(int16)", "INT16", 16),
    ElementType(_T.INT8, np.int8, "tensor(int8)", "INT8", 8),
    ElementType(_T.UINT64, np.uint64, "tensor(uint64)", "UINT64", 64),
    ElementType(_T.UINT32, np.uint32, "tensor(uint32)", "UINT32", 32),
    ElementType(_T.UINT16, np.uint16, "tensor(uint16)", "UINT16", 16),
    ElementType(_T.UINT8, np.uint8, "tensor(uint8)", "UINT8", 8),
    ElementType(_T.BOOL, np.bool_, "tensor(bool)", "BOOL", 8),
    ElementType(_T.STRING, np.str_, "tensor(string)", "BYTES", 0),
    ElementType(_T.COMPLEX64, np.complex64, "tensor(complex64)", None, 64),
    ElementType(_T.COMPLEX128, np.complex128, "tensor(complex128)", None, 128),
    ElementType(_T.INT4, None, "tensor(int4)", None, 4),
    ElementType(_T.UINT4, None, "tensor(uint4)", None, 4),
    *(ElementType(getattr(_T, name), None, f"tensor({name.lower()})", None, bits)
      for name, bits in (("FLOAT8E4M3FN", 8), ("FLOAT8E4M3FNUZ", 8), ("FLOAT8E5M2", 8), ("FLOAT8E5M2FNUZ", 8),
                         ("FLOAT4E2M1", 4)) if hasattr(_T, name)),
)
_BY_ONNX = {t.onnx: t for t in TYPES}

ORT_TYPES = {t.ort: t.numpy for t in TYPES if t.numpy is not None}
PROTOCOL_TYPES = {t.protocol: np.dtype(object if t.onnx == _T.STRING else t.numpy)
                  for t in TYPES if t.protocol and t.numpy is not None}
# the floating-point types arithmetic runs in (float, double, float16, bfloat16): 16 bits or more;
# the 8- and 4-bit float formats are for storage, ONNX's arithmetic ops take none of them
FLOAT_TYPES = frozenset(t.onnx for t in TYPES if t.ort[len("tensor("):].startswith(("float", "double", "bfloat"))
                        and t.bits >= 16)


def numpy_dtype(onnx_type: int, where: str = "a tensor") -> np.dtype:
    """The numpy dtype of an ONNX element type; :class:`ModelError` when numpy has none."""
    entry = _BY_ONNX.get(onnx_type)
    if entry is None or entry.numpy is None:
        name = _T.DataType.Name(onnx_type) if entry is not None else f"unknown data type {onnx_type}"
        raise ModelError(f"{where}: element type {name} has no numpy dtype")
    return np.dtype(entry.numpy)


def storage_bytes(onnx_type: int, dims, where: str = "a tensor") -> int:
    """Bytes a tensor of this type and shape takes as raw data (sub-byte types packed)."""
    entry = _BY_ONNX.get(onnx_type)
    if entry is None:
        raise ModelError(f"{where}: unknown data type {onnx_type}")
    return (math.prod(dims) * entry.bits + 7) // 8
