"""Batch inference on Ray Data: :class:`OnnxPredictor` is the callable class ``Dataset.map_batches``
runs (the onnxforge session made once per actor, in ``__init__``), and :func:`infer_files` is what
``onnxforge infer --engine ray --input DIR_OR_GLOB -o OUT`` does: Parquet, CSV or an image folder
in, a Parquet folder out with the input's columns plus ``prediction`` (see :mod:`.scoring`); for
images the columns are ``path`` and ``prediction`` (the encoded files are read as bytes and
decoded by the model card's image rule in the predictor, not written out).

Ray Data streams: blocks are read, scored in batches of ``batch_size`` rows and written while
later ones are still read, so memory is bounded by the batch size and the blocks in flight, not
by the dataset. ``concurrency`` is the number of predictor actors (each takes one CPU: leave at
least one CPU of the cluster for the read and write tasks, or the pipeline waits for it forever),
``num_gpus`` each actor's GPUs (the session then runs on CUDA).
"""

from __future__ import annotations

import glob
import os
import shutil
import time
from pathlib import Path

from onnxforge.runtime.distributed._extras import init_ray, require, worker_error
from onnxforge.runtime.data.images import IMAGE_SUFFIXES
from onnxforge.runtime.distributed.scoring import IMAGE_BYTES, PREDICTION, BatchScorer, as_rows
from onnxforge.runtime.errors import DataError
from onnxforge.runtime.modelio.files import load_model

__all__ = ["OnnxPredictor", "map_predictions", "read_files", "infer_files"]

TABLE_SUFFIXES = {".parquet": "parquet", ".csv": "csv"}


class OnnxPredictor:
    """``ds.map_batches(OnnxPredictor, fn_constructor_kwargs={"model": ...}, batch_format="numpy")``:
    the batch's columns plus ``prediction``; ``drop`` names columns left out of the result (the
    pixels of an image folder)."""

    def __init__(self, model, *, columns=None, device: str = "cpu", threads: int | None = 1, drop=()):
        self.scorer = BatchScorer(model, columns=columns, device=device, threads=threads)
        self.drop = set(drop)

    def __call__(self, batch: dict) -> dict:
        out = {k: v for k, v in batch.items() if k not in self.drop}
        out[PREDICTION] = as_rows(self.scorer(batch))
        return out


def map_predictions(ds, model, *, batch_size: int = 1024, concurrency: int | None = None, num_gpus: float | None = None,
                    columns=None, threads: int | None = 1, drop=()):
    """``ds`` with a ``prediction`` column, scored by :class:`OnnxPredictor` actors."""
    blob = load_model(model).SerializeToString()  # one copy in the object store, shared by the actors
    device = "cuda" if num_gpus else "cpu"
    rd = require("ray.data", "Ray Data inference")
    pool = ({"compute": rd.ActorPoolStrategy(size=concurrency or 1)} if hasattr(rd, "ActorPoolStrategy")
            else {"concurrency": concurrency or 1})  # `concurrency` is deprecated from Ray 2.51
    return ds.map_batches(OnnxPredictor, batch_size=batch_size, batch_format="numpy", **pool,
                          num_gpus=num_gpus, fn_constructor_kwargs={"model": blob, "columns": columns, "device": device,
                                                                    "threads": threads, "drop": tuple(drop)})


def _paths(source: str) -> list[str]:
    p = Path(source)
    if p.is_dir():
        return sorted(str(f) for f in p.rglob("*") if f.is_file() and not f.name.startswith((".", "_")))
    found = sorted(f for f in glob.glob(source, recursive=True) if os.path.isfile(f))
    if not found:
        raise DataError(f"--input '{source}' is neither a folder nor a pattern that matches files")
    return found


def read_files(source: str):
    """A Ray dataset from a folder or glob of Parquet, CSV or image files (one kind), and the kind."""
    rd = require("ray.data", "Ray Data inference")
    paths = _paths(source)
    kinds = {TABLE_SUFFIXES.get(Path(f).suffix.lower()) or ("image" if Path(f).suffix.lower() in IMAGE_SUFFIXES else
                                                             Path(f).suffix.lower() or "no extension") for f in paths}
    if not paths or len(kinds) != 1 or not kinds <= {"parquet", "csv", "image"}:
        raise DataError(f"--input '{source}' must hold files of one kind: .parquet, .csv or images "
                        f"({', '.join(IMAGE_SUFFIXES)}); found {', '.join(sorted(kinds)) or 'no files'}")
    kind = kinds.pop()
    if kind == "parquet":
        return rd.read_parquet(paths), kind
    if kind == "csv":
        return rd.read_csv(paths), kind
    return rd.read_binary_files(paths, include_paths=True), kind


def infer_files(model, source: str, out, *, batch_size: int = 1024, concurrency: int | None = None,
                num_gpus: float | None = None, columns=None, verbose: bool = False) -> dict:
    """Score every row (or image) under ``source`` and write ``out`` (a folder of Parquet files,
    complete or absent: written beside it and renamed into place). Returns rows, seconds, rows/s."""
    ray = require("ray", "Ray Data inference")
    # Ray's tasks and actors run in other folders (the session's): every path is made absolute here
    out, source = Path(out).absolute(), os.path.abspath(os.fspath(source))
    if out.exists():
        raise DataError(f"output '{out}' already exists; choose another -o or remove it first")
    proto = load_model(model)
    init_ray(ray, verbose=verbose, log_to_driver=False)
    ds, kind = read_files(source)
    scored = map_predictions(ds, proto, batch_size=batch_size, concurrency=concurrency, num_gpus=num_gpus,
                             columns=columns, drop=(IMAGE_BYTES,) if kind == "image" else ())
    OnnxPredictor(proto, columns=columns, drop=(IMAGE_BYTES,))(ds.take_batch(4, batch_format="numpy"))  # one-line errors first
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    start = time.perf_counter()
    try:
        scored.write_parquet(str(tmp))
        rows = sum(_parquet_rows(f) for f in tmp.glob("*.parquet"))
        os.replace(tmp, out)
    except Exception as exc:  # noqa: BLE001 - an actor's onnxforge error arrives wrapped by Ray
        raise (worker_error(exc) or exc) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    seconds = time.perf_counter() - start
    return {"rows": rows, "seconds": seconds, "rows_per_s": rows / seconds if seconds > 0 else None, "kind": kind,
            "output": str(out)}


def _parquet_rows(path) -> int:
    pq = require("pyarrow.parquet", "Ray Data inference")
    return pq.ParquetFile(path).metadata.num_rows
