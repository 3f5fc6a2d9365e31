"""What the commands share to read real data: class names, table sizes and vocabularies for
``build``, and the data options of ``train``/``eval``."""

from __future__ import annotations

from pathlib import Path

import click

from onnxforge.runtime.errors import DataError
from onnxforge.runtime.data import images, tables, text
from onnxforge.runtime.data.tokenizers import build_tokenizer

__all__ = ["classes_from", "columns", "table_options", "data_path", "image_shape", "text_vocab"]

data_path = click.Path(exists=False, dir_okay=True)


def table_options(f):
    """--target and --features, for commands that read tables."""
    f = click.option("--features", default=None, metavar="COLUMNS",
                     help="Table columns that are the inputs, comma-separated [default: the model card's, or every "
                          "column but the target].")(f)
    return click.option("--target", default=None, metavar="COLUMN",
                        help="Table column that holds the label [default: the model card's].")(f)


def columns(text: str | None) -> list[str] | None:
    return [c.strip() for c in text.split(",") if c.strip()] if text else None


def classes_from(path: str, target: str | None, features=None, *, progress: bool = False) -> list[str]:
    """Class names from a table (``--target``), an image folder or a ``label<TAB>text`` file."""
    p = Path(path)
    if p.is_dir():
        return images.scan_folder(p)[0]
    if tables.is_table(p) and (target or not text.is_text(p)):
        return tables.summarize_table(p, target, columns(features), progress=progress).classes or []
    if text.is_text(p):
        labels, _, _ = text.read_columns(p, "label<TAB>text", progress=progress)
        names = tables.class_names(labels)
        if len(names) < 2:
            raise DataError(f"'{p}' holds {len(names)} distinct label(s); a classifier needs at least 2")
        return names
    raise DataError(f"--classes-from takes a table (with --target), a folder of class subfolders or a "
                    f"label<TAB>text file; got '{p}'")


def image_shape(folder: str) -> tuple[int, int, int]:
    """``(channels, height, width)`` of the first image in a class folder (grey: 1, else 3)."""
    from PIL import Image

    first = images.scan_folder(folder)[1][0][0]
    try:
        with Image.open(first) as im:
            return (1 if im.mode in ("1", "L", "I", "I;16", "F") else 3), im.size[1], im.size[0]
    except OSError as exc:
        raise DataError(f"image '{first}' cannot be decoded ({exc})") from None


def text_vocab(path: str, kind: str, max_size: int | None, column: str):
    """A tokenizer of one column (``source``, ``target`` or ``text``) of a tab-separated file (or of
    every line of a plain ``.txt`` for ``text``)."""
    p = Path(path)
    if column == "text" and p.suffix.lower() == ".txt":
        texts = [t for _, t in text.read_lines(p)]
    else:
        left, right, _ = text.read_columns(p, "label<TAB>text" if column == "text" else "source<TAB>target")
        texts = left if column == "source" else right
    return build_tokenizer(texts, kind, max_size)
