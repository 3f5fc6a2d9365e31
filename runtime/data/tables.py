"""Tables: ``.csv``, ``.tsv`` and ``.parquet`` files, read in record batches by pyarrow's streaming
CSV reader and Parquet batch iterator, so memory stays bounded (rows beyond the spill budget go to a
memory-mapped temporary file, :mod:`~onnxforge.runtime.data.spill`).

A table has one column per feature and a target column (``--target``). Feature columns must hold
numbers in every row: a cell that is empty or not a number is refused naming the file, the data row
(1-based, header not counted) and the column. A classifier's target may hold any strings: the class
names are the distinct values (sorted numerically when all are numbers, else as text), and the
model card keeps them, its feature columns and its target, so ``infer`` takes the same table (the
target column may be missing there) and answers with the names.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from onnxforge.runtime.data.spill import RowSpill
from onnxforge.runtime.errors import DataError

__all__ = ["TABLE_SUFFIXES", "is_table", "table_columns", "read_columns", "TableSummary", "summarize_table", "read_table",
           "class_names", "MAX_CLASSES"]

TABLE_SUFFIXES = (".csv", ".tsv", ".parquet", ".pq")
BATCH_ROWS = 65536
MAX_CLASSES = 1000  # more distinct target values than this is no classification table


def is_table(path) -> bool:
    return Path(path).suffix.lower() in TABLE_SUFFIXES


def _pyarrow():
    import pyarrow  # imported on use: it takes a second to import, and only table commands need it
    import pyarrow.compute
    import pyarrow.csv
    import pyarrow.parquet

    return pyarrow


def _check_file(path: Path) -> None:
    if not path.is_file():
        raise DataError(f"table '{path}' does not exist" if not path.exists() else f"'{path}' is not a file")


def _csv_options(pa, path: Path, columns=None):
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    convert = pa.csv.ConvertOptions(strings_can_be_null=False)
    if columns is not None:
        convert = pa.csv.ConvertOptions(include_columns=list(columns), column_types={c: pa.string() for c in columns},
                                        strings_can_be_null=False)
    # one thread: a threaded reader parses ahead of a slower consumer without bound (RSS near the file size)
    return pa.csv.ReadOptions(block_size=1 << 22, use_threads=False), pa.csv.ParseOptions(delimiter=delimiter), convert


def _arrow_error(path: Path, exc: Exception) -> DataError:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return DataError(f"table '{path}' cannot be read ({text[:200]})")


def _unique(path: Path, names: list[str]) -> list[str]:
    """``names``, refused in one line when one of them names two columns."""
    seen: dict[str, int] = {}
    for i, name in enumerate(names):
        if name in seen:
            raise DataError(f"table '{path}' has two columns named {name[:80]!r} (columns {seen[name] + 1} and {i + 1}); "
                            "give each column its own name")
        seen[name] = i
    return names


def table_columns(path) -> list[str]:
    """The column names of a table, read from its header (CSV) or schema (Parquet); every name once."""
    pa, path = _pyarrow(), Path(path)
    _check_file(path)
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            return _unique(path, list(pa.parquet.ParquetFile(path).schema_arrow.names))
        read, parse, convert = _csv_options(pa, path)
        names = pa.csv.open_csv(path, read_options=read, parse_options=parse, convert_options=convert).schema.names
        return _unique(path, list(names))
    except (pa.ArrowException, OSError) as exc:
        raise _arrow_error(path, exc) from None


def _batches(path: Path, columns: list[str], progress: bool, desc: str):
    """Yield ``(first row index, {column: arrow array})`` over the table, one record batch at a time."""
    pa = _pyarrow()
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(desc=desc, unit=" rows", unit_scale=True, leave=False, disable=None)
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            source = pa.parquet.ParquetFile(path, pre_buffer=False, buffer_size=1 << 20).iter_batches(
                batch_size=BATCH_ROWS, columns=columns)
            if bar is not None:
                bar.total = pa.parquet.ParquetFile(path).metadata.num_rows
        else:
            read, parse, convert = _csv_options(pa, path, columns)
            source = pa.csv.open_csv(path, read_options=read, parse_options=parse, convert_options=convert)
        offset = 0
        for batch in source:
            yield offset, {name: batch.column(name) for name in columns}
            offset += batch.num_rows
            if bar is not None:
                bar.update(batch.num_rows)
    except (pa.ArrowException, OSError) as exc:
        raise _arrow_error(path, exc) from None
    finally:
        if bar is not None:
            bar.close()


def read_columns(path, names: list[str], *, progress: bool = False) -> dict[str, list]:
    """``{column: [values...]}`` of the named columns as Python values (numbers, strings, None for an
    empty cell): what ``infer`` carries from its input to its output beside the predictions."""
    path = Path(path)
    out: dict[str, list] = {name: [] for name in names}
    if not names:
        return out
    for _, cols in _batches(path, list(names), progress, f"reading {path.name}"):
        for name in names:
            out[name].extend(cols[name].to_pylist())
    return out


def _where(path: Path, row: int, column: str) -> str:
    line = f" (line {row + 1})" if path.suffix.lower() in (".csv", ".tsv") else ""
    return f"'{path}' row {row}{line}, column '{column}'"


def _numbers(path: Path, column: str, arr, offset: int) -> np.ndarray:
    """One column of a batch as float64, or DataError naming the first empty or non-numeric cell."""
    pa = _pyarrow()
    try:
        if arr.null_count:
            raise ValueError
        return pa.compute.cast(arr, pa.float64()).to_numpy(zero_copy_only=False)
    except (pa.ArrowException, ValueError, TypeError):
        for i, value in enumerate(arr.to_pylist()):
            if value is None or (isinstance(value, str) and not value.strip()):
                raise DataError(f"{_where(path, offset + i + 1, column)} is empty; every feature cell must hold a "
                                "number") from None
            try:
                float(value)
            except (TypeError, ValueError):
                raise DataError(f"{_where(path, offset + i + 1, column)} holds {str(value)[:40]!r}, not a number; "
                                "feature columns must be numeric (drop it with --features, or encode it as numbers)"
                                ) from None
        raise DataError(f"'{path}' column '{column}' has type {arr.type}, not numbers") from None


def _texts(arr) -> list[str]:
    pa = _pyarrow()
    return [("" if v is None else str(v)) for v in pa.compute.cast(arr, pa.string()).to_pylist()]


def _pick(path: Path, target: str | None, features, *, need_target: bool = True) -> tuple[list[str], str | None]:
    """The feature columns (given, or every column but the target) and the target, checked to exist."""
    have = table_columns(path)
    if target is not None and target not in have and need_target:
        raise DataError(f"table '{path}' has no target column '{target}'; its columns are: {', '.join(have)}")
    for name in features or ():
        if name not in have:
            raise DataError(f"table '{path}' has no column '{name}' (a feature of the model); its columns are: "
                            f"{', '.join(have)}")
    chosen = list(features) if features else [c for c in have if c != target]
    if not chosen:
        raise DataError(f"table '{path}' has no feature columns besides the target '{target}'")
    return chosen, (target if target in have else None)


def class_names(values) -> list[str]:
    """Distinct label strings in class order: numerically when every one is a number, else as text."""
    values = sorted(set(values))
    try:
        return sorted(values, key=float)
    except ValueError:
        return values


@dataclass
class TableSummary:
    """What one pass over a training table learns: columns, rows, classes and feature statistics."""

    features: list[str]
    target: str
    rows: int
    classes: list[str] | None  # distinct target values (None for a regression target)
    mean: np.ndarray
    std: np.ndarray


def summarize_table(path, target: str | None, features=None, *, classify: bool = True, progress: bool = False) -> TableSummary:
    """One streaming pass: every feature checked numeric, their mean and standard deviation (Chan's
    combination of per-batch moments, float64), and the distinct target values of a classifier."""
    path = Path(path)
    if not target:
        raise DataError(f"table '{path}': name the label column with --target")
    features, _ = _pick(path, target, features)  # the target exists, or _pick said so
    n, mean, m2, seen = 0, np.zeros(len(features)), np.zeros(len(features)), set()
    for offset, cols in _batches(path, features + [target], progress, f"reading {path.name}"):
        block = np.stack([_numbers(path, c, cols[c], offset) for c in features], axis=1)
        if classify:
            seen.update(_texts(cols[target]))
            if len(seen) > MAX_CLASSES:
                raise DataError(f"table '{path}': target column '{target}' has more than {MAX_CLASSES} distinct values; "
                                "for a regression model give --outputs")
        else:
            _numbers(path, target, cols[target], offset)
        k = len(block)
        if not k:
            continue
        bmean, bm2 = block.mean(axis=0), ((block - block.mean(axis=0)) ** 2).sum(axis=0)
        delta, total = bmean - mean, n + k
        mean, m2, n = mean + delta * k / total, m2 + bm2 + delta**2 * n * k / total, total
    if n == 0:
        raise DataError(f"table '{path}' has no data rows")
    std = np.sqrt(m2 / n)
    std[std == 0] = 1.0
    if classify and len(seen) < 2:
        raise DataError(f"table '{path}': target column '{target}' holds {len(seen)} distinct value(s); a classifier "
                        "needs at least 2 classes")
    return TableSummary(features, target, n, class_names(seen) if classify else None, mean, std)


def read_table(path, features, target: str | None = None, *, labels: list[str] | None = None,
               classify: bool = True, need_targets: bool = True, progress: bool = False,
               budget: int | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """``(x, y)``: features as float32 ``[N, F]`` (memory-mapped past the spill budget) and targets:
    class ids of ``labels`` for a classifier (integer ids when the model has no names), float32 for
    regression; ``y`` is None when the table has no ``target`` column and none are needed."""
    path = Path(path)
    features, target = _pick(path, target, features, need_target=need_targets)
    if need_targets and target is None:
        raise DataError(f"table '{path}': name the label column with --target (the model card names none)")
    index = {name: i for i, name in enumerate(labels)} if labels else None
    with RowSpill(np.float32, (len(features),), budget) as xs, \
            RowSpill(np.int64 if classify else np.float32, (), budget) as ys:  # a failed read leaves no spill file
        for offset, cols in _batches(path, features + ([target] if target else []), progress, f"reading {path.name}"):
            xs.append(np.stack([_numbers(path, c, cols[c], offset) for c in features], axis=1))
            if target is None:
                continue
            if not classify:
                ys.append(_numbers(path, target, cols[target], offset))
                continue
            ys.append(_class_ids(path, target, _texts(cols[target]), offset, index, labels))
        x = xs.finish()
        if len(x) == 0:
            raise DataError(f"table '{path}' has no data rows")
        return x, (ys.finish() if target is not None else None)


def _class_ids(path: Path, target: str, values: list[str], offset: int, index, labels) -> np.ndarray:
    if index is None:
        try:
            return np.array([int(v) for v in values], np.int64)
        except ValueError:
            i = next(i for i, v in enumerate(values) if not v.strip().lstrip("-").isdigit())
            raise DataError(f"{_where(path, offset + i + 1, target)} holds label {values[i][:40]!r}; the model has no "
                            "class names, so labels must be integer class ids (build it with --classes-from this table)"
                            ) from None
    ids = np.array([index.get(v, -1) for v in values], np.int64)
    if (ids < 0).any():
        i = int(np.argmax(ids < 0))
        raise DataError(f"{_where(path, offset + i + 1, target)} holds label {values[i][:40]!r}, which is not one of the "
                        f"model's {len(labels)} classes ({', '.join(labels[:10])}{', ...' if len(labels) > 10 else ''})")
    return ids
