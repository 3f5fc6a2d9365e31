"""Small real datasets and runnable examples shipped with onnxforge.

``digits``: the UCI 8x8 handwritten digits (1,797 images, 64 features in [0, 1], 10 classes),
split once with a fixed seed into ``digits_train.npz`` (1,437) and ``digits_test.npz`` (360).
The same examples, reshaped, for ConvNets (``digits_images_{train,test}.npz``, x ``[N, 1, 8, 8]``)
and LSTMs reading 8 rows of 8 pixels (``digits_rows_{train,test}.npz``, x ``[N, 8, 8]``).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from onnxforge.runtime.modelio.files import atomic_write_bytes

HERE = Path(__file__).resolve().parent

__all__ = ["path", "load_digits", "save_png"]


def path(name: str) -> Path:
    """Path of a bundled sample file, e.g. ``path("digits_train.npz")``."""
    p = HERE / name
    if not p.is_file():
        raise FileNotFoundError(f"no sample file {name!r} in {HERE}")
    return p


DIGITS_VIEWS = {"flat": (64,), "images": (1, 8, 8), "rows": (8, 8)}


def load_digits(view: str = "flat") -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """``((x_train, y_train), (x_test, y_test))``: float32 features, int64 labels.

    ``view`` shapes each example: "flat" [64], "images" [1, 8, 8] (ConvNets), "rows" [8, 8]
    (8 steps of 8 features, for LSTMs)."""
    if view not in DIGITS_VIEWS:
        raise ValueError(f"view must be one of {', '.join(DIGITS_VIEWS)}; got {view!r}")
    out = []
    for split in ("train", "test"):
        with np.load(path(f"digits_{split}.npz")) as f:
            out.append((f["x"].reshape(-1, *DIGITS_VIEWS[view]), f["y"]))
    return out[0], out[1]


def save_png(path, pixels) -> Path:
    """Write ``pixels`` (uint8 [H, W] grey or [H, W, 3] RGB) as a PNG with Pillow, atomically."""
    from PIL import Image  # imported on use (start-up time): only the samples that draw need these

    pixels = np.asarray(pixels)
    if pixels.dtype != np.uint8 or pixels.ndim not in (2, 3) or (pixels.ndim == 3 and pixels.shape[2] != 3):
        raise ValueError(f"pixels must be uint8 [H, W] or [H, W, 3]; got {pixels.dtype} {list(pixels.shape)}")
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    atomic_write_bytes(path, buffer.getvalue())
    return Path(path)
