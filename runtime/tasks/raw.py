"""Raw inputs in, answers out, by the model card: texts, images and table rows become the model's
feeds, and its outputs become class names or decoded text.

- :func:`feeds_from_raw` (``load(...)`` session + a list of texts, image paths/bytes or table
  rows) and :func:`feeds_from_bytes` (the server's Open Inference Protocol ``BYTES`` elements:
  UTF-8 text for a model with a tokenizer, encoded image files for an image model) build feeds;
- :func:`answers` runs the model on feeds and returns one string per example;
- :func:`predict_raw` is both: ``predict_raw(load("model.onnx"), ["Wed, Nov 25 2026"])``.

The same card rule does the work everywhere (the tokenizer, the image decode of
:mod:`~onnxforge.runtime.data.images`, the table's feature columns), so ``infer``, the Python API
and the server answer alike for the same raw input. Feature scaling needs nothing here: it is
in the graph (:mod:`~onnxforge.runtime.data.scaling`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from onnxforge.runtime.data import images, tables
from onnxforge.runtime.errors import InputError
from onnxforge.runtime.tasks.registry import task_of
from onnxforge.runtime.tasks.sources import data_kind, open_data

__all__ = ["raw_kind", "table_features", "feeds_from_raw", "feeds_from_bytes", "feeds_from_path", "answers", "predict_raw"]


def raw_kind(session) -> str:
    """What raw input the model takes: ``text``, ``image``, ``table`` or ``array`` (its task's rule)."""
    return task_of(session.card).raw_kind(session)


def _text_feeds(session, texts: list[str]) -> dict:
    where = lambda i: f"text {i + 1} ({texts[i][:30]!r})"  # noqa: E731
    return task_of(session.card).text_feeds(session, [str(t) for t in texts], where)


def _image_feeds(session, items) -> dict:
    spec = images.ImageSpec.for_model(session.card, session.inputs[0].shape)
    where = lambda i, item: None if isinstance(item, (str, Path)) else f"{i + 1} (encoded bytes)"  # noqa: E731
    x = np.stack([images.decode_image(item, spec, where(i, item)) for i, item in enumerate(items)])
    return {session.inputs[0].name: x}


def _row_feeds(session, rows) -> dict:
    features = session.card.features
    if rows and isinstance(rows[0], dict):
        missing = [f for f in features if f not in rows[0]]
        if missing:
            raise InputError(f"row 1 has no value for feature '{missing[0]}'; the model reads {', '.join(features)}")
        rows = [[row[f] for f in features] for row in rows]
    try:
        x = np.asarray(rows, np.float32)
    except (TypeError, ValueError):
        raise InputError(f"table rows must hold numbers for the features {', '.join(features)}") from None
    if x.ndim != 2 or x.shape[1] != len(features):
        raise InputError(f"table rows must have {len(features)} values ({', '.join(features)}); got shape {list(x.shape)}")
    return {session.inputs[0].name: x}


def feeds_from_raw(session, values) -> dict:
    """Feeds for a list of raw examples: strings (text model), paths or encoded bytes (image
    model), dicts ``{column: number}`` or lists of numbers in feature order (table model)."""
    values = list(values)
    if not values:
        raise InputError("no inputs given")
    kind = raw_kind(session)
    if kind == "text":
        return _text_feeds(session, values)
    if kind == "image":
        return _image_feeds(session, values)
    if kind == "table":
        return _row_feeds(session, values)
    raise InputError("this model's card describes no raw input (no tokenizer, image rule or feature columns): give "
                     "table rows with the feature columns named (infer --input TABLE --features a,b,c), or arrays "
                     "(infer --input FILE.npz; Session.predict in Python)")


def feeds_from_bytes(session, items) -> dict:
    """Feeds from the elements of a ``BYTES`` tensor (for the server): UTF-8 text for a text model,
    encoded image files for an image model. Raises :class:`InputError` (HTTP 400) otherwise."""
    kind = raw_kind(session)
    items = [bytes(i) if isinstance(i, (bytes, bytearray, memoryview)) else i for i in items]
    if kind == "text":
        try:
            return _text_feeds(session, [i.decode("utf-8") if isinstance(i, bytes) else str(i) for i in items])
        except UnicodeDecodeError:
            raise InputError("BYTES elements for a text model must be UTF-8 text") from None
    if kind == "image":
        return _image_feeds(session, [i.encode() if isinstance(i, str) else i for i in items])
    raise InputError("this model takes no BYTES input: it has neither a tokenizer nor an image rule in its card")


def table_features(session, path, features=None) -> list[str]:
    """The feature columns ``infer`` reads from a table: ``features`` given (``--features``), else
    the card's; a one-input model whose card names none is refused naming ``--features``."""
    features = list(features or session.card.features or [])
    if features:
        return features
    have = tables.table_columns(path)
    raise InputError(f"the model's card names no feature columns, so onnxforge cannot tell which of the columns of "
                     f"'{path}' ({', '.join(have)}) are its inputs: name them with --features, e.g. "
                     f"--features {','.join(have[:3])}")


def feeds_from_path(session, path, *, progress: bool = False, features=None) -> tuple[dict, list[str] | None]:
    """``(feeds, names)`` for ``infer --input``: a table (the ``features`` columns, default the
    card's), an image, or a folder of images (with their paths as ``names``, in sorted order);
    ``.npz`` and others go through the data loader."""
    kind = data_kind(path, session.card)
    if kind == "image" and raw_kind(session) == "image":  # one image file (a captioner has two inputs)
        return _image_feeds(session, [path]), [str(path)]
    if kind == "images":
        found = images.list_images(path)
        spec = images.ImageSpec.for_model(session.card, session.inputs[0].shape)
        x = images.read_images(found, spec, progress=progress)
        return {session.inputs[0].name: x}, [str(p) for p in found]
    if kind == "table":
        card = session.card
        x, _ = tables.read_table(path, table_features(session, path, features), card.target, labels=card.labels,
                                 need_targets=False, progress=progress)
        return {session.inputs[0].name: x}, None
    ds = open_data(path, session.inputs, session.card, need_targets=False, progress=progress, name=str(path))
    return ds.inputs, ([str(path)] if kind == "image" else None)


def answers(session, feeds: dict, *, beam: int = 1, max_len: int | None = None, batch_size: int = 256) -> list[str]:
    """One string per example: the class name (or id), the decoded text, or the output values (the
    task's ``answers``)."""
    return task_of(session.card).answers(session, feeds, beam=beam, max_len=max_len, batch_size=batch_size)


def predict_raw(session, values, **options) -> list[str]:
    """``answers(session, feeds_from_raw(session, values))``: raw examples in, strings out."""
    return answers(session, feeds_from_raw(session, values), **options)
