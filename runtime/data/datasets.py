"""Datasets: ``.npz`` files with ``x`` (or arrays named after the model's inputs) and ``y``,
checked against the model before any work starts."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from onnxforge.runtime.data.arrays import read_npz
from onnxforge.runtime.errors import DataError

__all__ = ["Dataset", "load_npz", "as_dataset", "check_dataset"]


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
        with open(path, "rb") as fh:
            head = fh.read(4)
    except OSError as exc:
        raise DataError(f"data file '{path}' cannot be read ({exc.strerror or exc})") from None
    if head != b"PK\x03\x04" and head[:4] != b"PK\x05\x06":
        raise DataError(f"'{path}' is not a .npz archive ({_kind_of(head)}); data files are .npz archives "
                        "(numpy.savez) holding x (or one array per model input) and y")
    arrays = read_npz(path)
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


_MAGIC = ((b"\x89PNG", "a PNG image"), (b"\xff\xd8\xff", "a JPEG image"), (b"GIF8", "a GIF image"),
          (b"\x93NUM", "an .npy array; put it in an .npz with numpy.savez"), (b"\x80", "a pickle"),
          (b"\x1f\x8b", "a gzip file"), (b"%PDF", "a PDF"))


def _kind_of(head: bytes) -> str:
    """What a file's first bytes say it is, for the message refusing it."""
    for magic, kind in _MAGIC:
        if head.startswith(magic):
            return f"it is {kind}"
    if not head:
        return "it is empty"
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return "its first bytes are no format onnxforge reads"
    return "it is text, e.g. CSV"


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


def _where(index: tuple) -> str:
    """``row 3``, ``row 3, column 5`` or ``row 3, position [0, 2, 1]`` for an index into an array."""
    row, rest = index[0], index[1:]
    if not rest:
        return f"row {row}"
    if len(rest) == 1:
        return f"row {row}, column {rest[0]}"
    return f"row {row}, position [{', '.join(map(str, rest))}]"


def _first(mask: np.ndarray) -> tuple:
    """Index of the first True of ``mask`` (in C order), without materialising every hit."""
    return tuple(int(i) for i in np.unravel_index(int(np.argmax(mask.reshape(-1))), mask.shape))


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _check_finite(src: str, what: str, verb: str, arr: np.ndarray, original: np.ndarray | None = None) -> None:
    """Raise :class:`DataError` naming the first NaN/Inf of float ``arr`` and how many there are.

    ``original``: the array before a narrowing cast, to tell an overflow (1e300 as float32) apart."""
    finite = np.isfinite(arr)
    if finite.all():
        return
    bad = ~finite
    index = _first(bad)
    value = arr[index] if arr.ndim else arr
    found = "NaN" if np.isnan(value) else ("+Inf" if value > 0 else "-Inf")
    if original is not None and np.isfinite(original[index]):
        found += f" (its value {original[index]:g} overflows {arr.dtype.name})"
    count = int(np.count_nonzero(bad))
    raise DataError(f"{src}: {what} {verb} {found} at {_where(index)}; {_plural(count, 'NaN or Inf value')} in all")


def _hint(name: str, dtype: np.dtype, want: np.dtype) -> str:
    var = name if name.isidentifier() else "arr"
    scale = " / 255 for 8-bit pixels" if dtype == np.uint8 and want.kind == "f" else ""
    return f"convert it first, e.g. {var}.astype('{want.name}'){scale}"


def _check_int_range(src: str, name: str, arr: np.ndarray, want: np.dtype) -> None:
    """Integer ``arr`` must fit integer dtype ``want`` (e.g. uint64 ids as int64)."""
    if np.can_cast(arr.dtype, want, "safe") or arr.size == 0:
        return
    lo, hi = np.iinfo(want).min, np.iinfo(want).max
    have = np.iinfo(arr.dtype)
    low = have.min < lo and arr.min() < lo
    high = have.max > hi and arr.max() > hi
    if not (low or high):
        return
    mask = np.zeros(arr.shape, bool)
    if have.min < lo:
        mask |= arr < lo
    if have.max > hi:
        mask |= arr > hi
    index = _first(mask)
    raise DataError(f"{src}: input '{name}' holds {arr[index]} at {_where(index)}, which does not fit the model's "
                    f"{want.name}; {_plural(int(np.count_nonzero(mask)), 'value')} out of range in all")


def _check_ids(src: str, name: str, arr: np.ndarray, n: int) -> None:
    """Token ids in ``arr`` must lie in ``[0, n)``."""
    if arr.size == 0 or (arr.min() >= 0 and arr.max() < n):
        return
    bad = (arr < 0) | (arr >= n)
    index = _first(bad)
    raise DataError(f"{src}: input '{name}' holds token id {arr[index]} at {_where(index)}; the model's vocabulary "
                    f"has ids 0 to {n - 1} ({_plural(int(np.count_nonzero(bad)), 'id')} out of range in all)")


def check_dataset(data: Dataset, inputs, *, task: str | None, classes: int | None,
                  target_shape: tuple | None = None, need_targets: bool = True,
                  ignore_index: int | None = None, vocab: dict | None = None) -> Dataset:
    """Validate ``data`` against the model's inputs (a list of IOInfo) and task; cast dtypes.

    Raises :class:`DataError` (one line, starting with the data's source) for: an empty set, unequal
    lengths, a wrong rank, fixed dimension or dtype kind (integers for a float input, floats for
    integer ids), NaN or Inf (naming the first row and column and the count), labels that are not
    integers or lie outside ``[0, classes)`` (naming the first row). Float64 is cast to float32 and
    narrower or unsigned integers to int64 ids when their values fit. The checks are vectorised
    numpy; structural ones (shapes, dtypes, lengths) come before the ones that read every value.
    ``vocab`` (``{input name: number of ids}``, a model card's ``vocabularies``) bounds token-id inputs to
    ``[0, n)``: an embedding lookup outside it would fail (or wrap around) inside ONNX Runtime.
    """
    src = data.source
    numeric_targets = task in ("regression", None)  # else class ids
    expected = {i.name: i for i in inputs}
    for name in data.inputs:
        if name not in expected:
            raise DataError(f"{src}: array '{name}' matches no model input; inputs are {', '.join(expected)}")
    arrays = {}
    for name, info in expected.items():
        if name not in data.inputs:
            raise DataError(f"{src}: no array for model input '{name}'")
        arr = np.asarray(data.inputs[name])
        if arr.ndim == 0:
            raise DataError(f"{src}: input '{name}' must have one row per example; got a scalar")
        if arr.shape[0] == 0:
            raise DataError(f"{src}: the dataset is empty (input '{name}' has shape {list(arr.shape)})")
        if arr.dtype.kind not in "fiub":
            raise DataError(f"{src}: input '{name}' must be numeric; got dtype {arr.dtype}")
        want = np.dtype(info.dtype)
        same_kind = arr.dtype.kind == want.kind or (want.kind in "iu" and arr.dtype.kind in "iu")
        if want.kind in "fiub" and not same_kind:
            what = "integer ids " if want.kind in "iu" else ""
            raise DataError(f"{src}: input '{name}' expects {what}{info.describe()}; got {arr.dtype.name} "
                            f"{list(arr.shape)}: {_hint(name, arr.dtype, want)}")
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
        arrays[name] = (arr, want)
    lengths = {f"'{name}'": arr.shape[0] for name, (arr, _) in arrays.items()}
    y = data.y
    if y is not None:
        y = np.asarray(y)
        if y.ndim == 0:
            raise DataError(f"{src}: targets 'y' must have one entry per example; got a scalar")
        lengths["'y'"] = y.shape[0]
        if y.dtype.kind not in "fiub":
            kind = "targets must be numeric" if numeric_targets else "labels must be integer class ids"
            raise DataError(f"{src}: {kind}; got dtype {y.dtype}")
    elif need_targets:
        raise DataError(f"{src}: no targets 'y' given")
    if len(set(lengths.values())) > 1:
        raise DataError(f"{src}: arrays have different numbers of examples: "
                        + ", ".join(f"{k} has {n}" for k, n in lengths.items()))

    fixed = {}
    for name, (arr, want) in arrays.items():
        if want.kind in "iu" and arr.dtype.kind in "iu":
            _check_int_range(src, name, arr, want)
            if vocab and isinstance(vocab.get(name), int):
                _check_ids(src, name, arr, vocab[name])
        with np.errstate(over="ignore"):  # an overflow (1e300 as float32) is reported just below
            cast = arr.astype(want, copy=False)
        if cast.dtype.kind == "f":
            _check_finite(src, f"input '{name}'", "holds", cast, arr if cast is not arr else None)
        fixed[name] = np.ascontiguousarray(cast)
    if y is not None:
        if numeric_targets:
            original = y
            with np.errstate(over="ignore"):
                y = np.ascontiguousarray(y.astype(np.float32, copy=False))
            _check_finite(src, "targets 'y'", "hold", y, original if original.dtype.kind == "f" else None)
            if target_shape is not None:
                if y.ndim == len(target_shape) - 1:
                    y = y.reshape(*y.shape, 1) if target_shape[-1] == 1 else y
                if y.ndim != len(target_shape) or any(
                    isinstance(d, int) and d != g for d, g in list(zip(target_shape, y.shape))[1:]
                ):
                    raise DataError(f"{src}: targets have shape {list(y.shape)}; the model's output is "
                                    f"[{', '.join('?' if not isinstance(d, int) else str(d) for d in target_shape)}]")
        else:
            y = _check_labels(src, _label_shape(src, y, target_shape, classes), classes, ignore_index)
    return Dataset(fixed, y, src, checked=True)


def _shape_text(shape) -> str:
    return "[" + ", ".join("?" if not isinstance(d, int) else str(d) for d in shape) + "]"


def _label_shape(src: str, y: np.ndarray, target_shape: tuple | None, classes: int | None) -> np.ndarray:
    """Class ids shaped like the output without its class axis: ``[N, 1]`` is squeezed to ``[N]``,
    one-hot rows (``[N, C]``, exactly one 1 each) become their ids; any other rank is refused."""
    if not target_shape:
        return y
    rank = len(target_shape) - 1
    if y.ndim == rank + 1 and y.shape[-1] == 1 and classes != 1:
        return y.reshape(y.shape[:-1])
    if y.ndim == rank + 1 and classes is not None and y.shape[-1] == classes:
        if y.dtype.kind == "f":
            _check_finite(src, "labels 'y'", "hold", y)
        one = (y == 1).sum(axis=-1) == 1
        zero = ((y == 0) | (y == 1)).all(axis=-1)
        bad = ~(one & zero)
        if bad.any():
            index = _first(bad)
            raise DataError(f"{src}: labels 'y' have shape {list(y.shape)}, like one-hot rows of {classes} classes, but "
                            f"{_where(index)} is not one-hot (exactly one 1, the rest 0); give class ids shaped "
                            f"{_shape_text(target_shape[:-1])} or one-hot rows")
        return y.argmax(axis=-1)
    if y.ndim != rank:
        raise DataError(f"{src}: labels 'y' have shape {list(y.shape)}; the model's output {_shape_text(target_shape)} "
                        f"needs class ids shaped {_shape_text(target_shape[:-1])} (or one-hot rows shaped "
                        f"{_shape_text(target_shape)})")
    return y


def _check_labels(src: str, y: np.ndarray, classes: int | None, ignore_index: int | None) -> np.ndarray:
    """Class labels ``y`` as int64, or :class:`DataError` naming the first bad row and its value."""
    if y.dtype.kind == "b":
        y = y.view(np.uint8)
    if y.dtype.kind == "f":
        _check_finite(src, "labels 'y'", "hold", y)
        fractional = y != np.round(y)
        if fractional.any():
            index = _first(fractional)
            count = int(np.count_nonzero(fractional))
            raise DataError(f"{src}: labels 'y' must be integer class ids; got {y[index]:g} at {_where(index)} "
                            f"({_plural(count, 'non-integer value')} in all)")
    if classes is not None and y.size and (y.min() < 0 or y.max() >= classes):
        bad = (y < 0) | (y >= classes)
        if ignore_index is not None:
            bad &= y != ignore_index
        if bad.any():
            index = _first(bad)
            count = int(np.count_nonzero(bad))
            raise DataError(f"{src}: label {y[index]:g} is outside [0, {classes}) for a model with {classes} classes: "
                            f"'y' holds it at {_where(index)} ({_plural(count, 'label')} out of range in all)")
    return y.astype(np.int64)
