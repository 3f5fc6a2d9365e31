"""The one element-type table against onnx's own mapping and ONNX Runtime's type strings."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper

from onnxforge.runtime import ModelError
from onnxforge.runtime.modelio.dtypes import FLOAT_TYPES, ORT_TYPES, PROTOCOL_TYPES, TYPES, numpy_dtype, storage_bytes


def test_numpy_types_and_sizes_agree_with_onnx():
    for t in TYPES:
        if t.numpy is not None and t.onnx != TensorProto.STRING:
            assert np.dtype(t.numpy) == helper.tensor_dtype_to_np_dtype(t.onnx), t
            assert t.bits == 8 * np.dtype(t.numpy).itemsize, t
    assert storage_bytes(TensorProto.INT4, [3]) == 2 and storage_bytes(TensorProto.BFLOAT16, [2, 3]) == 12
    assert numpy_dtype(TensorProto.FLOAT) == np.float32
    with pytest.raises(ModelError, match="element type BFLOAT16 has no numpy dtype"):
        numpy_dtype(TensorProto.BFLOAT16)
    with pytest.raises(ModelError, match="unknown data type 999"):
        storage_bytes(999, [1])


def test_runtime_and_protocol_names():
    assert ORT_TYPES["tensor(float)"] is np.float32 and ORT_TYPES["tensor(string)"] is np.str_
    assert PROTOCOL_TYPES["FP32"] == np.float32 and PROTOCOL_TYPES["BYTES"] == np.dtype(object)
    assert "BF16" not in PROTOCOL_TYPES  # no numpy dtype to carry it


def test_float_types_are_the_arithmetic_floats():
    assert FLOAT_TYPES == {TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.FLOAT16, TensorProto.BFLOAT16}
