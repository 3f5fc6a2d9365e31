"""The gate-order helper: ONNX (i, o, f, c) and PyTorch (i, f, g, o) blocks, both ways."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from onnxforge.graphs.lstm_gates import ONNX_GATES, TORCH_GATES, gate_order, onnx_to_torch, torch_to_onnx


def test_blocks_land_where_each_library_expects_them():
    h = 2
    onnx_rows = np.repeat(np.array(list(ONNX_GATES)), h)  # each row labelled with its gate
    torch_rows = onnx_to_torch(onnx_rows)
    assert "".join(torch_rows[::h]) == "ifco" and TORCH_GATES == "ifgo"  # g is ONNX's c
    np.testing.assert_array_equal(torch_to_onnx(torch_rows), onnx_rows)
    assert gate_order(1).tolist() == [0, 2, 3, 1]


def test_numpy_and_torch_alike_and_extra_axes_follow():
    a = np.arange(8 * 3, dtype=np.float32).reshape(8, 3)
    t = onnx_to_torch(torch.tensor(a))
    assert isinstance(t, torch.Tensor)
    np.testing.assert_array_equal(t.numpy(), onnx_to_torch(a))
    np.testing.assert_array_equal(onnx_to_torch(a)[2:4], a[4:6])  # PyTorch's f is ONNX's third block
    with pytest.raises(ValueError, match="divisible by 4"):
        onnx_to_torch(np.zeros(6))
