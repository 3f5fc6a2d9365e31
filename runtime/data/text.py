"""Text files, UTF-8, one example per line (blank lines skipped):

- ``label<TAB>text`` for a classifier (the first tab splits; the label may be any string);
- ``source<TAB>target`` for an encoder-decoder;
- plain text for a language model (each line one sequence: it reads ``BOS t1 .. tn`` and
  predicts ``t1 .. tn EOS``).

A line without a tab where one is needed, or bytes that are not UTF-8, are refused naming the file
and line. Tokens come from a :class:`~onnxforge.runtime.data.tokenizers.Tokenizer`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from onnxforge.runtime.data.tokenizers import BOS, EOS, Tokenizer
from onnxforge.runtime.errors import DataError

__all__ = ["TEXT_SUFFIXES", "is_text", "read_lines", "read_columns", "pairs_arrays", "labelled_arrays",
           "corpus_arrays"]

TEXT_SUFFIXES = (".tsv", ".txt", ".text")


def is_text(path) -> bool:
    return Path(path).suffix.lower() in TEXT_SUFFIXES


def read_lines(path, *, progress: bool = False) -> list[tuple[int, str]]:
    """``[(line number, text)]`` of the non-blank lines (line ends stripped)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"text file '{path}' does not exist" if not path.exists() else f"'{path}' is not a file")
    out = []
    with open(path, "rb") as fh:
        lines = fh
        if progress:
            from tqdm import tqdm

            lines = tqdm(fh, desc=f"reading {path.name}", unit=" lines", leave=False, disable=None)
        for number, raw in enumerate(lines, 1):
            try:
                text = raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError as exc:
                raise DataError(f"'{path}' line {number} is not UTF-8 text (byte {exc.start + 1})") from None
            if text.strip():
                out.append((number, text))
    if not out:
        raise DataError(f"text file '{path}' holds no lines")
    return out


def read_columns(path, what: str = "source<TAB>target", *, progress: bool = False):
    """``(left texts, right texts, where)``: each line split at its first tab; ``where(i)`` names
    example ``i``'s file and line for later errors."""
    path = Path(path)
    lines = read_lines(path, progress=progress)
    left, right = [], []
    for number, text in lines:
        if "\t" not in text:
            raise DataError(f"'{path}' line {number} has no tab; each line must be {what}")
        a, b = text.split("\t", 1)
        left.append(a)
        right.append(b)
    return left, right, (lambda i: f"'{path}' line {lines[i][0]}")


def pairs_arrays(path, src: Tokenizer, tgt: Tokenizer, *, src_width: int | None = None,
                 tgt_width: int | None = None, progress: bool = False) -> dict:
    """``{"src", "tgt"}`` token ids of a ``source<TAB>target`` file (targets end with EOS)."""
    sources, targets, where = read_columns(path, progress=progress)
    return {"src": src.encode_batch(sources, width=src_width, where=where),
            "tgt": tgt.encode_batch(targets, width=tgt_width, eos=True, where=where)}


def labelled_arrays(path, tokenizer: Tokenizer, labels: list[str] | None, *, width: int | None = None,
                    progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """``(x, y)`` of a ``label<TAB>text`` file: token ids and the labels' class ids."""
    names, texts, where = read_columns(path, "label<TAB>text", progress=progress)
    index = {n: i for i, n in enumerate(labels or [])}
    ids = []
    for i, name in enumerate(names):
        if labels and name not in index:
            raise DataError(f"{where(i)}: label {name[:40]!r} is not one of the model's {len(labels)} classes "
                            f"({', '.join(labels[:10])}{', ...' if len(labels) > 10 else ''})")
        if not labels and not name.strip().isdigit():
            raise DataError(f"{where(i)}: label {name[:40]!r} is no class id and the model has no class names "
                            "(build it with --classes-from this file)")
        ids.append(index[name] if labels else int(name))
    return tokenizer.encode_batch(texts, width=width, where=where), np.array(ids, np.int64)


def corpus_arrays(path, tokenizer: Tokenizer, *, width: int | None = None,
                  progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """``(x, y)`` of plain text for a per-step language model: ``x = BOS t1..tn``, ``y = t1..tn EOS``
    (padding 0, which the tagging loss ignores)."""
    lines = read_lines(path, progress=progress)
    texts = [t for _, t in lines]
    y = tokenizer.encode_batch(texts, width=width, eos=True, where=lambda i: f"'{path}' line {lines[i][0]}")
    x = np.zeros_like(y)
    x[:, 0] = BOS
    x[:, 1:] = y[:, :-1]
    x[x == EOS] = 0
    return x, y
