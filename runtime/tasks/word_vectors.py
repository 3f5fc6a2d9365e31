"""The word vectors a text model learned: its embedding table with the card's token list, cosine
neighbours, and the TensorBoard embedding projector's files (``vectors.tsv``: one tab-separated
vector a line; ``metadata.tsv``: the word of each line, in the same order).

The reserved ids (PAD, BOS, EOS, UNK) are left out: they are no words.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from onnx import numpy_helper

from onnxforge.runtime.data.tokenizers import RESERVED
from onnxforge.runtime.errors import DataError, ModelError
from onnxforge.runtime.modelio.card import ModelCard
from onnxforge.runtime.modelio.files import atomic_write_bytes

__all__ = ["TABLES", "word_vectors", "nearest", "write_projector"]

# builder -> (embedding initialiser, card token list)
TABLES = {"nplm": ("embed.weight", "tokens"), "lstm": ("embed.weight", "tokens"),
          "captioner": ("decoder.embedding.weight", "tokens"), "seq2seq": ("encoder.embedding.weight", "src_tokens")}


def word_vectors(model) -> tuple[list[str], np.ndarray]:
    """``(words, vectors [len(words), embed])`` of a model (``ModelProto``) built by one of ``TABLES``
    with a vocabulary from text."""
    card = ModelCard.from_model(model)
    if card.builder not in TABLES:
        raise ModelError(f"word vectors come from a text model built by onnxforge ({', '.join(TABLES)}); this model's "
                         f"builder is {card.builder!r}")
    name, which = TABLES[card.builder]
    tokens = getattr(card, which)
    table = next((t for t in model.graph.initializer if t.name == name), None)
    if table is None or not tokens:
        raise ModelError(f"the model has no embedding table {name!r} with a token list in its card "
                         "(build it with --vocab-from a text file)")
    vectors = numpy_helper.to_array(table).astype(np.float32)
    if vectors.shape[0] != len(tokens):
        raise ModelError(f"the embedding table {name!r} has {vectors.shape[0]} rows but the card lists {len(tokens)} tokens")
    keep = len(RESERVED)
    return list(tokens[keep:]), vectors[keep:]


def nearest(words: list[str], vectors: np.ndarray, word: str, k: int = 5) -> list[tuple[str, float]]:
    """The ``k`` words with the highest cosine similarity to ``word``'s vector, closest first."""
    if word not in words:
        close = sorted(words, key=lambda w: (w[:1] != word[:1], abs(len(w) - len(word))))[:5]
        raise DataError(f"word {word!r} is not in the model's vocabulary of {len(words)} words "
                        f"(some it has: {', '.join(close)})")
    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    i = words.index(word)
    sims = unit @ unit[i]
    sims[i] = -np.inf
    order = np.argsort(-sims, kind="stable")[: max(0, min(int(k), len(words) - 1))]
    return [(words[j], float(sims[j])) for j in order]


def write_projector(folder, words: list[str], vectors: np.ndarray) -> tuple[Path, Path]:
    """Write ``folder/vectors.tsv`` and ``folder/metadata.tsv`` (atomically) for the TensorBoard
    embedding projector ("Load" takes the two files); returns their paths."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise DataError(f"'{folder}' is a file; the projector export writes a folder")
    folder.mkdir(parents=True, exist_ok=True)
    rows = "".join("\t".join(f"{v:.7g}" for v in row) + "\n" for row in vectors)
    vectors_tsv, metadata_tsv = folder / "vectors.tsv", folder / "metadata.tsv"
    atomic_write_bytes(vectors_tsv, rows.encode("utf-8"))
    atomic_write_bytes(metadata_tsv, "".join(w.replace("\t", " ") + "\n" for w in words).encode("utf-8"))
    return vectors_tsv, metadata_tsv
