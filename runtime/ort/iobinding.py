"""Tensors that stay on the session's device between calls: :class:`DeviceArray` and the I/O
binding run behind :meth:`onnxforge.runtime.Session.run_on_device`.

On CUDA, ``Session.run`` copies every input to the GPU and every output back to the host. With
I/O binding the outputs stay where ONNX Runtime produced them (GPU memory), wrapped as
:class:`DeviceArray`; feeding a :class:`DeviceArray` to the next call binds it without a copy.
``numpy()`` copies to the host only when asked. On the CPU the same code path runs with host
memory, so programs written for it work unchanged on either device.
"""

from __future__ import annotations

import numpy as np

from onnxforge.runtime.modelio.dtypes import ORT_TYPES
from onnxforge.runtime.ort.distribution import ort

__all__ = ["DeviceArray"]


class DeviceArray:
    """A tensor owned by ONNX Runtime on a device (an ``OrtValue``): ``shape``, ``dtype``,
    ``device`` (``"cpu"`` or ``"cuda"``), and ``numpy()`` to copy it to the host."""

    __slots__ = ("ortvalue",)

    def __init__(self, ortvalue):
        self.ortvalue = ortvalue

    @classmethod
    def from_numpy(cls, array, device: str = "cpu", device_id: int = 0) -> "DeviceArray":
        arr = np.ascontiguousarray(array)
        return cls(ort().OrtValue.ortvalue_from_numpy(arr, device, device_id))

    @property
    def shape(self) -> tuple:
        return tuple(self.ortvalue.shape())

    @property
    def dtype(self) -> np.dtype:

        return np.dtype(ORT_TYPES.get(self.ortvalue.data_type(), object))

    @property
    def device(self) -> str:
        return self.ortvalue.device_name().lower()

    def numpy(self) -> np.ndarray:
        """A host copy (on the CPU, ONNX Runtime's own buffer viewed as an array)."""
        return self.ortvalue.numpy()

    def __array__(self, dtype=None, copy=None):
        arr = self.numpy()
        return arr if dtype is None else arr.astype(dtype)

    def __repr__(self) -> str:
        return f"DeviceArray({self.dtype.name} {list(self.shape)} on {self.device})"


def run_bound(sess, device: str, feeds: dict, output_names: list[str], host_outputs=()) -> list:
    """One ``run_with_iobinding`` call: arrays and :class:`DeviceArray` inputs bound, outputs left
    on ``device`` (those in ``host_outputs``, e.g. strings, on the CPU). Each call builds its own
    binding, so threads can share the session."""
    binding = sess.io_binding()
    for name, value in feeds.items():
        if isinstance(value, DeviceArray):
            binding.bind_ortvalue_input(name, value.ortvalue)
        else:
            binding.bind_cpu_input(name, value)
    for name in output_names:
        binding.bind_output(name, "cpu" if name in host_outputs else device, 0)
    sess.run_with_iobinding(binding)
    return [DeviceArray(v) for v in binding.get_outputs()]
