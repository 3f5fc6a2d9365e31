"""Small real datasets and runnable examples shipped with onnxforge.

``digits``: the UCI 8x8 handwritten digits (1,797 images, 64 features in [0, 1], 10 classes),
split once with a fixed seed into ``digits_train.npz`` (1,437) and ``digits_test.npz`` (360).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent

__all__ = ["path", "load_digits"]


def path(name: str) -> Path:
    """Path of a bundled sample file, e.g. ``path("digits_train.npz")``."""
    p = HERE / name
    if not p.is_file():
        raise FileNotFoundError(f"no sample file {name!r} in {HERE}")
    return p


def load_digits() -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """``((x_train, y_train), (x_test, y_test))``: float32 [N, 64] features, int64 labels."""
    out = []
    for split in ("train", "test"):
        with np.load(path(f"digits_{split}.npz")) as f:
            out.append((f["x"], f["y"]))
    return out[0], out[1]
