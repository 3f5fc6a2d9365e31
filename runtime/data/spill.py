"""Rows gathered in chunks with bounded memory: kept in memory up to a budget, then written to a
temporary file that is memory-mapped when the read ends (and unlinked at once, so nothing is left
behind). Training reads a mapped array through its chunked gathers (64 MB at a time), so a table
or image folder larger than memory trains in about the budget plus one chunk."""

from __future__ import annotations

import os
import tempfile
from typing import IO

import numpy as np

__all__ = ["RowSpill", "SPILL_BYTES"]

SPILL_BYTES = int(os.environ.get("ONNXFORGE_SPILL_BYTES", 256 << 20))


class RowSpill:
    """Append ``[n, *row_shape]`` blocks of one dtype; :meth:`finish` returns all rows as one array.
    Used as a context manager, a read that fails or is interrupted (Ctrl-C included) removes its
    spill file on the way out."""

    def __init__(self, dtype, row_shape: tuple = (), budget: int | None = None):
        self.dtype, self.row_shape = np.dtype(dtype), tuple(row_shape)
        self.budget = SPILL_BYTES if budget is None else budget
        self.parts: list[np.ndarray] = []
        self.held = self.rows = 0
        self.file: IO[bytes] | None = None

    def append(self, block: np.ndarray) -> None:
        block = np.ascontiguousarray(block, dtype=self.dtype).reshape((-1,) + self.row_shape)
        self.rows += len(block)
        if self.file is None and self.held + block.nbytes <= self.budget:
            self.parts.append(block)
            self.held += block.nbytes
            return
        if self.file is None:
            self.file = tempfile.NamedTemporaryFile(prefix="onnxforge-rows-", suffix=".bin", delete=False)
            for part in self.parts:
                self.file.write(part.tobytes())
            self.parts, self.held = [], 0
        self.file.write(block.tobytes())

    def __enter__(self) -> RowSpill:
        return self

    def __exit__(self, kind, exc, tb) -> None:
        if kind is not None:
            self.discard()

    def discard(self) -> None:
        """Drop what was gathered and remove the spill file, if any (safe to call more than once)."""
        self.parts, self.held = [], 0
        if self.file is not None:
            self.file.close()
            try:
                os.unlink(self.file.name)
            except FileNotFoundError:
                pass

    def finish(self) -> np.ndarray:
        """The rows: an in-memory array, or a read-only memory map of the spilled file."""
        if self.file is None:
            if not self.parts:
                return np.zeros((0,) + self.row_shape, self.dtype)
            return np.concatenate(self.parts) if len(self.parts) > 1 else self.parts[0]
        self.file.close()
        try:
            if not self.rows:
                return np.zeros((0,) + self.row_shape, self.dtype)
            return np.memmap(self.file.name, self.dtype, "r", shape=(self.rows,) + self.row_shape)
        finally:
            os.unlink(self.file.name)  # the mapping stays valid; the space is freed when it goes
