"""The LSTM gate order between ONNX and PyTorch, in one place.

ONNX's ``LSTM`` stacks the blocks of W, R and B as gates i, o, f, c; PyTorch's ``nn.LSTM`` and
``torch.lstm`` as i, f, g (= c), o.
"""

from __future__ import annotations

import numpy as np

__all__ = ["TORCH_FROM_ONNX", "onnx_to_torch_gates"]

TORCH_FROM_ONNX = (0, 2, 3, 1)  # PyTorch's i, f, g, o blocks, taken from ONNX's i, o, f, c


def onnx_to_torch_gates(m, hidden: int):
    """``m`` (``[4 * hidden, ...]``, a numpy array or a torch tensor) with its gate blocks in
    PyTorch's order."""
    blocks = m.reshape(4, hidden, *m.shape[1:])
    if isinstance(m, np.ndarray):
        picked = blocks[list(TORCH_FROM_ONNX)]
    else:
        import torch  # the optional dependency; a tensor means it is there

        picked = blocks.index_select(0, torch.tensor(TORCH_FROM_ONNX))
    return picked.reshape(4 * hidden, *m.shape[1:])
