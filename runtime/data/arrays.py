"""Reading ``.npy`` arrays and ``.npz`` members without trusting their headers: the checked
reader of :mod:`onnxforge.runtime.modelio.arrays` (kept there, the lowest layer that reads arrays,
so model weights files are read through it too)."""

from __future__ import annotations

from onnxforge.runtime.modelio.arrays import read_npy, read_npz

__all__ = ["read_npy", "read_npz"]
