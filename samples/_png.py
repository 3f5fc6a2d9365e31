"""A tiny PNG writer (8-bit greyscale or RGB, zlib from the standard library): no dependency."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np

__all__ = ["write_png", "heatmap", "labelled_heatmap"]


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def write_png(path, pixels: np.ndarray) -> Path:
    """Write ``pixels`` (uint8 [H, W] greyscale or [H, W, 3] RGB) as a PNG file."""
    pixels = np.asarray(pixels)
    if pixels.dtype != np.uint8 or pixels.ndim not in (2, 3) or (pixels.ndim == 3 and pixels.shape[2] != 3):
        raise ValueError(f"pixels must be uint8 [H, W] or [H, W, 3]; got {pixels.dtype} {list(pixels.shape)}")
    h, w = pixels.shape[:2]
    colour = 2 if pixels.ndim == 3 else 0
    rows = pixels.reshape(h, -1)
    raw = b"".join(b"\x00" + rows[i].tobytes() for i in range(h))  # filter type 0 on every row
    data = (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, colour, 0, 0, 0))
            + _chunk(b"IDAT", zlib.compress(raw, 9)) + _chunk(b"IEND", b""))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def heatmap(values: np.ndarray, cell: int = 12) -> np.ndarray:
    """A [R, C] array in [0, 1] as an RGB image, ``cell`` pixels per entry, white (0) to dark blue (1),
    with a 1-pixel grey grid."""
    v = np.clip(np.asarray(values, np.float64), 0.0, 1.0)
    low, high = np.array([255, 255, 255.0]), np.array([8, 48, 107.0])
    rgb = (low + (high - low) * v[..., None]).astype(np.uint8)
    img = np.repeat(np.repeat(rgb, cell, axis=0), cell, axis=1)
    img[::cell, :] = 200
    img[:, ::cell] = 200
    return img


# A 3x5 pixel font (rows top to bottom) for the characters of dates; letters drawn as capitals.
_FONT = {
    "0": ("###", "#.#", "#.#", "#.#", "###"), "1": (".#.", "##.", ".#.", ".#.", "###"),
    "2": ("###", "..#", "###", "#..", "###"), "3": ("###", "..#", ".##", "..#", "###"),
    "4": ("#.#", "#.#", "###", "..#", "..#"), "5": ("###", "#..", "###", "..#", "###"),
    "6": ("###", "#..", "###", "#.#", "###"), "7": ("###", "..#", ".#.", ".#.", ".#."),
    "8": ("###", "#.#", "###", "#.#", "###"), "9": ("###", "#.#", "###", "..#", "###"),
    "A": (".#.", "#.#", "###", "#.#", "#.#"), "B": ("##.", "#.#", "##.", "#.#", "##."),
    "C": (".##", "#..", "#..", "#..", ".##"), "D": ("##.", "#.#", "#.#", "#.#", "##."),
    "E": ("###", "#..", "##.", "#..", "###"), "F": ("###", "#..", "##.", "#..", "#.."),
    "G": (".##", "#..", "#.#", "#.#", ".##"), "H": ("#.#", "#.#", "###", "#.#", "#.#"),
    "I": ("###", ".#.", ".#.", ".#.", "###"), "J": ("..#", "..#", "..#", "#.#", ".#."),
    "K": ("#.#", "#.#", "##.", "#.#", "#.#"), "L": ("#..", "#..", "#..", "#..", "###"),
    "M": ("#.#", "###", "###", "#.#", "#.#"), "N": ("##.", "#.#", "#.#", "#.#", "#.#"),
    "O": (".#.", "#.#", "#.#", "#.#", ".#."), "P": ("##.", "#.#", "##.", "#..", "#.."),
    "Q": (".#.", "#.#", "#.#", "##.", ".##"), "R": ("##.", "#.#", "##.", "#.#", "#.#"),
    "S": (".##", "#..", ".#.", "..#", "##."), "T": ("###", ".#.", ".#.", ".#.", ".#."),
    "U": ("#.#", "#.#", "#.#", "#.#", "###"), "V": ("#.#", "#.#", "#.#", "#.#", ".#."),
    "W": ("#.#", "#.#", "###", "###", "#.#"), "X": ("#.#", "#.#", ".#.", "#.#", "#.#"),
    "Y": ("#.#", "#.#", ".#.", ".#.", ".#."), "Z": ("###", "..#", ".#.", "#..", "###"),
    ",": ("...", "...", "...", ".#.", "#.."), ".": ("...", "...", "...", "...", ".#."),
    "/": ("..#", "..#", ".#.", "#..", "#.."), "-": ("...", "...", "###", "...", "..."),
    " ": ("...", "...", "...", "...", "..."),
}


def _glyph(ch: str, scale: int) -> np.ndarray:
    rows = _FONT.get(ch.upper(), ("###", "#.#", "#.#", "#.#", "###"))
    g = np.array([[c == "#" for c in r] for r in rows])
    return np.repeat(np.repeat(g, scale, axis=0), scale, axis=1)


def labelled_heatmap(values: np.ndarray, columns: str, rows: list[str], cell: int = 14) -> np.ndarray:
    """:func:`heatmap` with one character above each column and a label left of each row
    (drawn with a 3x5 pixel font; unknown characters show as a box)."""
    v = np.asarray(values)
    scale = max(1, (cell - 4) // 5)
    width = max((len(r) for r in rows), default=1)
    left, top = width * (3 * scale + scale) + cell // 2, cell + cell // 2
    body = heatmap(v, cell)
    img = np.full((top + body.shape[0], left + body.shape[1], 3), 255, np.uint8)
    img[top:, left:] = body

    def draw(text: str, y: int, x: int) -> None:
        for k, ch in enumerate(text):
            g = _glyph(ch, scale)
            xx = x + k * (3 * scale + scale)
            img[y : y + g.shape[0], xx : xx + g.shape[1]][g] = 0

    for j, ch in enumerate(columns[: v.shape[1]]):
        draw(ch, (top - 5 * scale) // 2, left + j * cell + (cell - 3 * scale) // 2)
    for i, label in enumerate(rows[: v.shape[0]]):
        draw(label, top + i * cell + (cell - 5 * scale) // 2, cell // 4)
    return img
