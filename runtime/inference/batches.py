"""The one batched-inference loop: feeds cut into chunks of rows, a function run on each chunk,
the results put back together. ``Session.predict`` and decoding use it; so can any caller that
runs a model over more rows than fit in one call."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TypeVar

import numpy as np

from onnxforge.runtime.errors import InputError

T = TypeVar("T")

__all__ = ["common_rows", "in_batches", "stitch"]


def common_rows(feeds: dict) -> int | None:
    """The number of rows every feed has (``None`` for scalars); unequal counts are an error."""
    rows = {k: (v.shape[0] if len(v.shape) else None) for k, v in feeds.items()}
    counts = set(rows.values())
    if len(counts) > 1:
        raise InputError("inputs must have equally many rows to be chunked; got "
                         + ", ".join(f"{k}: {n}" for k, n in rows.items()))
    return counts.pop() if counts else None


def _check_batch_size(batch_size) -> int | None:
    if batch_size is None:
        return None
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or int(batch_size) < 1:
        raise InputError(f"batch_size must be a positive integer; got {batch_size!r}")
    return int(batch_size)


def in_batches(function: Callable[[dict], T], feeds: dict, batch_size: int | None, *,
               progress: bool = False, desc: str = "predict") -> Iterator[tuple[slice, T]]:
    """``(rows, function(chunk))`` for each chunk of at most ``batch_size`` rows of ``feeds``
    (``rows`` a slice; one chunk ``slice(0, None)`` holding everything when ``batch_size`` is
    ``None`` or the feeds have no more rows). Chunks are views, so memory-mapped arrays are read
    one chunk at a time."""
    size = _check_batch_size(batch_size)
    rows = common_rows(feeds)
    if not size or rows is None or rows <= size:
        yield slice(0, None), function(feeds)
        return
    starts = range(0, rows, size)
    if progress:
        from tqdm import tqdm  # start-up time: only when asked for

        starts = tqdm(starts, desc=desc, unit="batch", leave=False)
    for start in starts:
        chunk = slice(start, min(start + size, rows))
        yield chunk, function({k: v[chunk] for k, v in feeds.items()})


def stitch(parts, rows: int | None, name: str) -> np.ndarray:
    """One array from the ``(rows, part)`` chunks of :func:`in_batches` over ``rows`` rows,
    allocated once (a single chunk is returned as it is); a part without one row per input row
    raises :class:`InputError` naming the output ``name``."""
    result = None
    for chunk, part in parts:
        if chunk.stop is None:
            return part
        count = chunk.stop - chunk.start
        if part.ndim == 0 or part.shape[0] != count or (result is not None and part.shape[1:] != result.shape[1:]):
            raise InputError(f"output '{name}' does not have one row per input row "
                             f"(shape {list(part.shape)} for {count} rows); use run()")
        if result is None:
            result = np.empty((rows,) + part.shape[1:], part.dtype)
        result[chunk] = part
    return result  # type: ignore[return-value]  # None only for no parts: datasets are checked non-empty first
