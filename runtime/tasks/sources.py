"""Data for a model, chosen by the path: the one place that turns a file or folder into a checked
:class:`~onnxforge.runtime.data.datasets.Dataset` (``train``, ``eval``, ``infer`` and the Python API).

- ``.npz``: arrays ``x`` (or named after the inputs) and ``y``, as always;
- ``.csv`` / ``.tsv`` / ``.parquet`` tables: the card's feature columns (or ``features``) and
  target (or ``target``); string labels mapped to the card's class names;
- a folder: ``DIR/<class>/*.png|jpg|...`` decoded by the card's image rule;
- ``.tsv`` / ``.txt`` text for a model with a tokenizer: ``source<TAB>target`` for an
  encoder-decoder, ``label<TAB>text`` for a classifier, plain lines for a per-step language model.

A ``.tsv`` is text for a model whose card has a tokenizer, a table otherwise.
"""

from __future__ import annotations

import os
from pathlib import Path

from onnxforge.runtime.data import images, tables, text
from onnxforge.runtime.data.datasets import Dataset, as_dataset
from onnxforge.runtime.data.tokenizers import Tokenizer
from onnxforge.runtime.errors import DataError
from onnxforge.runtime.modelio.card import ModelCard
from onnxforge.runtime.tasks.registry import task_for, task_of

__all__ = ["open_data", "data_kind", "text_tokenizers"]


def _card(card) -> ModelCard:
    return card if isinstance(card, ModelCard) else ModelCard.from_dict(dict(card or {}))


def data_kind(path, card: ModelCard) -> str:
    """``npz``, ``table``, ``images``, ``text`` or ``image`` (one image file) for ``path``."""
    p = Path(path)
    suffix = p.suffix.lower()
    if p.is_dir():
        return "images"
    if suffix == ".npz":
        return "npz"
    if images.is_image(p):
        return "image"
    if text.is_text(p) and (card.tokenizer or suffix == ".txt"):
        return "text"
    if tables.is_table(p):
        return "table"
    return "npz"  # any other name: the .npz reader says what the file is


def text_tokenizers(card: ModelCard) -> tuple[Tokenizer, Tokenizer | None]:
    """``(source or only tokenizer, target tokenizer or None)`` from the card, or DataError."""
    return task_of(card).tokenizers(card)


def open_data(data, inputs, card, *, target: str | None = None, features=None, need_targets: bool = True,
              progress: bool = False, name: str = "data", prepare=None) -> Dataset:
    """``data`` (a path, pair or Dataset) as a Dataset for a model with ``inputs`` (IOInfo) and
    model ``card`` (a :class:`ModelCard`, or its dict). ``target``/``features`` override the card's
    table columns."""
    names = [i.name for i in inputs]
    if isinstance(data, Dataset) or not isinstance(data, (str, os.PathLike)):
        return as_dataset(data, names, name, prepare)
    card = _card(card)
    kind = data_kind(data, card)
    if kind == "npz":
        return as_dataset(data, names, name, prepare)
    if kind == "text":
        return task_of(card).text_dataset(Path(data), card, list(inputs), progress)
    if len(names) != 1:
        raise DataError(f"'{data}': tables and images feed a one-input model; this one has {len(names)} inputs")
    classify = task_for(card).labels_are_classes
    if kind == "table":
        x, y = tables.read_table(data, features or card.features, target or card.target, labels=card.labels,
                                 classify=classify, need_targets=need_targets, progress=progress)
    elif kind == "images":
        spec = images.ImageSpec.for_model(card, inputs[0].shape)
        if need_targets or _has_class_folders(data):
            x, y = images.read_folder(data, spec, card.labels, progress=progress)
        else:
            x, y = images.read_images(images.list_images(data), spec, progress=progress), None
    else:
        spec = images.ImageSpec.for_model(card, inputs[0].shape)
        x, y = images.decode_image(data, spec)[None], None
    if need_targets and y is None:
        raise DataError(f"'{data}' holds no labels")
    return Dataset({names[0]: x}, y, str(data))


def _has_class_folders(path) -> bool:
    return any(p.is_dir() for p in Path(path).iterdir())
