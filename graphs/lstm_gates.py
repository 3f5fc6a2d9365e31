"""The LSTM gate order, written once.

ONNX's ``LSTM`` stacks the four gate blocks of ``W [4H, in]``, ``R [4H, H]`` and each half of
``B [8H]`` as i, o, f, c (input, output, forget, cell); PyTorch's ``nn.LSTM`` stacks them as
i, f, g, o (``g`` is the cell candidate, ONNX's ``c``). :func:`onnx_to_torch` and
:func:`torch_to_onnx` reorder the blocks along the first axis of a numpy array or a torch tensor.
"""

from __future__ import annotations

import numpy as np

__all__ = ["ONNX_GATES", "ONNX_TO_TORCH", "TORCH_GATES", "TORCH_TO_ONNX", "gate_order", "onnx_to_torch",
           "torch_to_onnx"]

ONNX_GATES = "iofc"
TORCH_GATES = "ifgo"
ONNX_TO_TORCH = (0, 2, 3, 1)  # the ONNX blocks taken in PyTorch's order
TORCH_TO_ONNX = (0, 3, 1, 2)  # the PyTorch blocks taken in ONNX's order


def gate_order(hidden: int, blocks: tuple[int, ...] = ONNX_TO_TORCH) -> np.ndarray:
    """Row indices ``[4 * hidden]`` that take the gate ``blocks`` in the given order."""
    return np.concatenate([np.arange(k * hidden, (k + 1) * hidden) for k in blocks])


def _reorder(a, blocks: tuple[int, ...]):
    rows = a.shape[0]
    if rows % 4:
        raise ValueError(f"LSTM gate blocks need a first axis divisible by 4; got shape {list(a.shape)}")
    return a[gate_order(rows // 4, blocks).tolist()]


def onnx_to_torch(a):
    """``a [4H, ...]`` in ONNX gate order (i, o, f, c) as PyTorch's (i, f, g, o)."""
    return _reorder(a, ONNX_TO_TORCH)


def torch_to_onnx(a):
    """``a [4H, ...]`` in PyTorch gate order (i, f, g, o) as ONNX's (i, o, f, c)."""
    return _reorder(a, TORCH_TO_ONNX)
