"""Datasets: ``.npz`` files with ``x`` (or arrays named after the model's inputs) and ``y``,
checked against the model before any work starts."""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from onnxforge.runtime.errors import DataError

__all__ = ["Dataset", "load_npz", "as_dataset"]


@dataclass
class Dataset:
    """Model inputs (``{input name: array}``, equal first dimensions) and targets ``y``."""

    inputs: dict
    y: np.ndarray | None
    source: str = "data"
    checked: bool = False  # set by check_dataset: dtypes and shapes fit the model

    def __len__(self) -> int:
        return len(next(iter(self.inputs.values())))


def load_npz(path: str | os.PathLike, input_names: list[str], *, need_targets: bool = True,
             target_key: str = "y", prepare=None) -> Dataset:
    """Read an ``.npz``: one input may come as ``x``; several must be named after the inputs.

    ``prepare`` (a task's hook, e.g. seq2seq's) may derive inputs and ``y`` from the arrays read."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"data file '{path}' does not exist")
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {k: archive[k] for k in archive.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise DataError(f"'{path}' is not a readable .npz file ({exc})") from None
    if prepare is not None:
        arrays = prepare(arrays)
    inputs = {}
    for name in input_names:
        if name in arrays:
            inputs[name] = arrays[name]
        elif len(input_names) == 1 and "x" in arrays:
            inputs[name] = arrays["x"]
        else:
            wanted = f"'x' or '{name}'" if len(input_names) == 1 and name != "x" else f"'{name}'"
            raise DataError(f"'{path}' has no array {wanted} for model input '{name}'; it holds: {', '.join(arrays) or 'nothing'}")
    y = arrays.get(target_key)
    if need_targets and y is None:
        raise DataError(f"'{path}' has no targets array '{target_key}'; it holds: {', '.join(arrays) or 'nothing'}")
    return Dataset(inputs, y, str(path))


def as_dataset(data, input_names: list[str], source: str = "data", prepare=None) -> Dataset:
    """Accept a :class:`Dataset`, an ``(x, y)`` pair, ``({name: x}, y)`` or a path to an ``.npz``
    (``prepare``: see :func:`load_npz`)."""
    if isinstance(data, Dataset):
        return data
    if isinstance(data, (str, os.PathLike)):
        return load_npz(data, input_names, prepare=prepare)
    if isinstance(data, (tuple, list)) and len(data) == 2:
        x, y = data
        if prepare is not None:
            arrays = prepare({**(dict(x) if isinstance(x, dict) else {"x": x}), **({} if y is None else {"y": y})})
            x, y = {k: arrays[k] for k in input_names if k in arrays}, arrays.get("y")
        if isinstance(x, dict):
            return Dataset({k: np.asarray(v) for k, v in x.items()}, None if y is None else np.asarray(y), source)
        if len(input_names) != 1:
            raise DataError(f"the model has {len(input_names)} inputs ({', '.join(input_names)}); pass a dict of arrays")
        return Dataset({input_names[0]: np.asarray(x)}, None if y is None else np.asarray(y), source)
    raise DataError(f"{source}: expected a Dataset, an (x, y) pair or an .npz path; got {type(data).__name__}")


def check_dataset(data: Dataset, inputs, *, task: str | None, classes: int | None,
                  target_shape: tuple | None = None, need_targets: bool = True,
                  ignore_index: int | None = None) -> Dataset:
    """Validate ``data`` against the model's inputs (a list of IOInfo) and task; cast dtypes.

    Raises :class:`DataError` for: an empty set, unequal lengths, wrong rank, fixed dimension or
    dtype kind, NaN or Inf, labels that are not integers or lie outside ``[0, classes)``.
    """
    src = data.source
    expected = {i.name: i for i in inputs}
    for name in data.inputs:
        if name not in expected:
            raise DataError(f"{src}: array '{name}' matches no model input; inputs are {', '.join(expected)}")
    lengths = set()
    fixed = {}
    for name, info in expected.items():
        if name not in data.inputs:
            raise DataError(f"{src}: no array for model input '{name}'")
        arr = np.asarray(data.inputs[name])
        if arr.ndim == 0 or arr.shape[0] == 0:
            raise DataError(f"{src}: the dataset is empty (input '{name}' has shape {list(arr.shape)})")
        if arr.dtype.kind not in "fiub":
            raise DataError(f"{src}: input '{name}' must be numeric; got dtype {arr.dtype}")
        want = np.dtype(info.dtype)
        if want.kind in "iu" and arr.dtype.kind == "f":
            if not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
                raise DataError(f"{src}: input '{name}' expects integer ids ({want.name}); got non-integer {arr.dtype} values")
        if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
            bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
            raise DataError(f"{src}: input '{name}' contains {bad} NaN or Inf value(s)")
        if info.shape and arr.ndim != len(info.shape):
            raise DataError(
                f"{src}: input '{name}' expects rank {len(info.shape)} {info.describe()}, "
                f"got shape {list(arr.shape)}"
            )
        for axis, (dim, got) in enumerate(zip(info.shape, arr.shape)):
            if axis > 0 and isinstance(dim, int) and dim != got:
                raise DataError(
                    f"{src}: input '{name}' expects size {dim} on axis {axis} {info.describe()}, "
                    f"got shape {list(arr.shape)}"
                )
        fixed[name] = np.ascontiguousarray(arr.astype(want, copy=False))
        lengths.add(arr.shape[0])
    y = data.y
    if y is not None:
        y = np.asarray(y)
        if y.ndim == 0:
            raise DataError(f"{src}: targets 'y' must have one entry per example; got a scalar")
        lengths.add(y.shape[0])
        if task == "regression" or task is None:
            if y.dtype.kind not in "fiub":
                raise DataError(f"{src}: targets must be numeric; got dtype {y.dtype}")
            y = y.astype(np.float32)
            if not np.all(np.isfinite(y)):
                raise DataError(f"{src}: targets contain NaN or Inf values")
            if target_shape is not None:
                if y.ndim == len(target_shape) - 1:
                    y = y.reshape(*y.shape, 1) if target_shape[-1] == 1 else y
                if y.ndim != len(target_shape) or any(
                    isinstance(d, int) and d != g for d, g in list(zip(target_shape, y.shape))[1:]
                ):
                    raise DataError(f"{src}: targets have shape {list(y.shape)}; the model's output is "
                                    f"[{', '.join('?' if not isinstance(d, int) else str(d) for d in target_shape)}]")
        else:
            if y.dtype.kind == "f":
                if not np.all(np.isfinite(y)):
                    raise DataError(f"{src}: labels contain NaN or Inf values")
                if not np.all(y == np.round(y)):
                    raise DataError(f"{src}: labels must be integer class ids; got non-integer values")
            elif y.dtype.kind not in "iub":
                raise DataError(f"{src}: labels must be integer class ids; got dtype {y.dtype}")
            y = y.astype(np.int64)
            if classes is not None:
                check = y[y != ignore_index] if ignore_index is not None else y
                if check.size and (check.min() < 0 or check.max() >= classes):
                    bad = int(check.min() if check.min() < 0 else check.max())
                    raise DataError(f"{src}: label {bad} is outside [0, {classes}) for a model with {classes} classes")
    elif need_targets:
        raise DataError(f"{src}: no targets 'y' given")
    if len(lengths) > 1:
        raise DataError(f"{src}: arrays have different numbers of examples: {sorted(lengths)}")
    return Dataset(fixed, y, src, checked=True)
