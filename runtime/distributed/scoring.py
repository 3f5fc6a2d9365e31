"""A batch of table rows or images in, a ``prediction`` per row out: what the Ray Data predictor
and the Spark UDF share, so both answer exactly what ``load(model).predict`` answers.

Features from a batch (``{column: array}``), in this order of rules:

- the model's inputs named as columns: each column feeds the input of its name;
- one input and one column of arrays (a Parquet list column, an image): the column stacked;
- an image model (see :func:`onnxforge.runtime.tasks.raw.raw_kind`) and a ``bytes`` column of
  encoded image files (``ray.data.read_binary_files``): decoded by the card's image rule through
  :func:`~onnxforge.runtime.tasks.raw.feeds_from_raw`, exactly as ``infer`` and the server do;
- one input of shape ``[N, F]``: ``F`` numeric columns, the ``columns`` given, else the model card's
  ``features`` (the table columns it was trained on), else every numeric column in the table's
  order (a count other than ``F`` is refused in one line). Feature scaling is in the graph.

The prediction is the class name (the card's
``labels``) or the class index of a classifier, the value of a one-output regressor, else the row's
output as a list.
"""

from __future__ import annotations

import numpy as np

from onnxforge.runtime.errors import DataError
from onnxforge.runtime.inference.session import Session, load
from onnxforge.runtime.tasks.raw import feeds_from_raw, raw_kind
from onnxforge.runtime.tasks.registry import task_of

__all__ = ["BatchScorer", "PREDICTION", "IMAGE_BYTES", "as_rows"]

PREDICTION = "prediction"
IMAGE_BYTES = "bytes"  # the column of encoded files ray.data.read_binary_files makes


def _stack(name: str, column) -> np.ndarray:
    arr = np.asarray(column)
    if arr.dtype == object:
        try:
            arr = np.stack([np.asarray(v) for v in arr])
        except ValueError:
            raise DataError(f"column '{name}': rows hold arrays of different shapes; every row must have the same "
                            "shape to feed the model") from None
    return arr


class BatchScorer:
    """One onnxforge session and the rules above. ``model``: a path, bytes or ``ModelProto``;
    ``columns``: the feature columns of a one-input model (default: see the module docstring)."""

    def __init__(self, model, *, columns=None, device: str = "cpu", threads: int | str | None = 1):
        self.session: Session = load(model, device=device, threads=threads)
        self.columns = list(columns) if columns else None
        card = self.session.card
        self.card_columns = card.features
        self.images = raw_kind(self.session) == "image"
        self.classifier = task_of(card).class_scores
        self.labels = card.labels

    def features(self, batch: dict) -> dict:
        """``{input name: array}`` for the model from a batch of columns."""
        inputs = self.session.inputs
        if self.images and IMAGE_BYTES in batch:
            return feeds_from_raw(self.session, [bytes(b) for b in batch[IMAGE_BYTES]])
        if all(i.name in batch for i in inputs) and not self.columns:
            return {i.name: self._cast(i, _stack(i.name, batch[i.name])) for i in inputs}
        if len(inputs) != 1:
            raise DataError(f"the model has {len(inputs)} inputs ({', '.join(i.name for i in inputs)}); the table needs "
                            f"one column named after each; got columns {', '.join(batch)}")
        info = inputs[0]
        names = self.columns or self.card_columns
        arrays = [c for c in batch if np.asarray(batch[c]).dtype == object or np.asarray(batch[c]).ndim > 1]
        if names is None and len(arrays) == 1:
            return {info.name: self._cast(info, _stack(arrays[0], batch[arrays[0]]))}
        if names is None:
            names = [c for c, v in batch.items() if np.asarray(v).ndim == 1 and np.asarray(v).dtype.kind in "biuf"]
        missing = [c for c in names if c not in batch]
        if missing:
            raise DataError(f"feature columns {', '.join(missing)} are not in the table (columns: {', '.join(batch)})")
        width = info.shape[-1] if len(info.shape) == 2 and isinstance(info.shape[-1], int) else None
        if width is not None and len(names) != width:
            raise DataError(f"input '{info.name}' takes {width} features per row; the table has {len(names)} numeric "
                            f"columns ({', '.join(names)}); name the {width} feature columns (columns=..., --features)")
        return {info.name: self._cast(info, np.stack([np.asarray(batch[c]) for c in names], axis=1))}

    @staticmethod
    def _cast(info, arr: np.ndarray) -> np.ndarray:
        want = np.dtype(info.dtype)
        if arr.dtype.kind == "f" and want.kind in "iu":
            raise DataError(f"input '{info.name}' takes {want.name} values; the table's columns hold {arr.dtype.name}")
        return arr.astype(want, copy=False)

    def predictions(self, outputs: np.ndarray) -> np.ndarray:
        """One prediction per row (a name, index or value; an array per row for wider outputs)."""
        if self.classifier:
            index = outputs.argmax(axis=-1)
            return self.session.label_names(index) if self.labels is not None and index.ndim == 1 else index
        return outputs[:, 0] if outputs.ndim == 2 and outputs.shape[1] == 1 else outputs

    def __call__(self, batch: dict) -> np.ndarray:
        """The predictions of a batch of columns."""
        return self.predictions(self.session.predict(self.features(batch)))


def as_rows(arr: np.ndarray) -> np.ndarray:
    """A column with one entry per row: 2-D and wider arrays as an object array of row arrays."""
    if arr.ndim <= 1:
        return arr
    out = np.empty(len(arr), dtype=object)
    out[:] = list(arr)
    return out
