"""Character- and word-level tokenizers, built from training text and stored in the model card.

Ids 0 = PAD, 1 = BOS, 2 = EOS (the encoder-decoder's reserved ids) and 3 = UNK come first; the
tokens of the training text follow, most frequent first (ties in sorted order), so a size limit
keeps the commonest. The rule for a token outside the vocabulary: when the vocabulary was cut by
the size limit (so training text itself had unknown tokens) it reads as UNK; otherwise it is
refused with a :class:`DataError` naming the text, the position and the token, because a model
never trained on UNK cannot say anything useful about it.

The card keeps the token list (``src_tokens``/``tgt_tokens`` of an encoder-decoder, ``tokens`` of
a one-vocabulary model) and ``tokenizer = {"kind": "char"|"word", "unknown": "unk"|"refuse"}``,
so the ``.onnx`` file alone tokenizes and detokenizes (:meth:`Tokenizer.from_card`).
"""

from __future__ import annotations

import functools
from collections import Counter
from dataclasses import dataclass

import numpy as np

from onnxforge.runtime.errors import DataError

__all__ = ["Tokenizer", "RESERVED", "UNK", "KINDS", "build_tokenizer"]

RESERVED = ("<pad>", "<bos>", "<eos>", "<unk>")
PAD, BOS, EOS, UNK = 0, 1, 2, 3
KINDS = ("char", "word")


@dataclass(frozen=True)
class Tokenizer:
    """Text <-> ids for one vocabulary: ``tokens[i]`` is the string of id ``i``."""

    kind: str
    tokens: tuple
    unknown: str = "refuse"  # "unk": unknown tokens read as UNK; "refuse": DataError

    def __post_init__(self):
        if self.kind not in KINDS:
            raise DataError(f"tokenizer kind must be one of {', '.join(KINDS)}; got {self.kind!r}")

    @functools.cached_property
    def index(self) -> dict:
        """Token -> id, built once per tokenizer (rebuilding it per text made a request of many
        short texts cost texts x vocabulary: 18 KB held a server for seconds)."""
        return {t: i for i, t in enumerate(self.tokens) if i >= len(RESERVED) or t not in RESERVED}

    def split(self, text: str) -> list[str]:
        return list(text) if self.kind == "char" else text.split()

    def encode(self, text: str, where: str = "text") -> list[int]:
        """The ids of ``text`` (no BOS/EOS); ``where`` names the text in errors (file and line)."""
        index, out = self.index, []
        for pos, tok in enumerate(self.split(text)):
            i = index.get(tok)
            if i is None:
                if self.unknown != "unk":
                    what = "character" if self.kind == "char" else "word"
                    raise DataError(f"{where}: {what} {tok!r} at position {pos + 1} is not in the model's vocabulary "
                                    f"of {len(self.tokens)} tokens (built from its training text)")
                i = UNK
            out.append(i)
        return out

    def encode_batch(self, texts: list[str], *, width: int | None = None, eos: bool = False,
                     where=None) -> np.ndarray:
        """Texts as an int64 ``[N, width]`` array (PAD after each text, EOS first if asked).
        ``where(i)`` names text ``i`` in errors; ``width`` defaults to the longest."""
        rows = [self.encode(t, where(i) if where else f"text {i + 1}") + ([EOS] if eos else [])
                for i, t in enumerate(texts)]
        longest = max((len(r) for r in rows), default=0)
        width = width or max(1, longest)
        if longest > width:
            i = next(i for i, r in enumerate(rows) if len(r) > width)
            raise DataError(f"{where(i) if where else f'text {i + 1}'}: {len(rows[i])} tokens"
                            f"{' with EOS' if eos else ''}; the model takes at most {width}")
        out = np.zeros((len(rows), width), np.int64)
        for i, r in enumerate(rows):
            out[i, : len(r)] = r
        return out

    def decode(self, ids) -> str:
        """Ids back to text: stops at EOS or PAD, skips BOS."""
        parts = []
        for i in np.asarray(ids).reshape(-1).tolist():
            if i in (PAD, EOS):
                break
            if i != BOS and 0 <= i < len(self.tokens):
                parts.append(self.tokens[i])
        return ("" if self.kind == "char" else " ").join(parts)

    def card_values(self) -> dict:
        return {"kind": self.kind, "unknown": self.unknown}

    @classmethod
    def from_card(cls, card, which: str = "tokens") -> Tokenizer | None:
        """The tokenizer of ``card``'s ``which`` vocabulary (``src_tokens``, ``tgt_tokens`` or
        ``tokens``), or ``None`` when the card has no tokenizer or no such token list."""
        spec, tokens = card.tokenizer, getattr(card, which, None)
        if not isinstance(spec, dict) or not tokens:
            return None
        kind, unknown = str(spec.get("kind", "char")), "unk" if spec.get("unknown") == "unk" else "refuse"
        # one per card and vocabulary (the same token list), so a large vocabulary's tuple and index
        # are built once, not per call: per server request, that was 0.4 s for 300,000 tokens
        cache = getattr(card, "__dict__", {}).setdefault("_tokenizers", {})
        key = (which, id(tokens), len(tokens), kind, unknown)
        if key not in cache:
            for old in [k for k in cache if k[0] == which]:  # that vocabulary was replaced: drop the old one
                del cache[old]
            cache[key] = cls(kind, tuple(tokens), unknown)
        return cache[key]


def build_tokenizer(texts, kind: str = "char", max_size: int | None = None) -> Tokenizer:
    """A tokenizer of the tokens in ``texts`` (reserved ids first), at most ``max_size`` ids in all."""
    probe = Tokenizer(kind, RESERVED)
    counts: Counter[str] = Counter()
    for text in texts:
        counts.update(probe.split(text))
    for reserved in RESERVED:
        counts.pop(reserved, None)
    ordered = sorted(counts, key=lambda t: (-counts[t], t))
    room = None if max_size is None else max_size - len(RESERVED)
    if room is not None and room < 1:
        raise DataError(f"a vocabulary size limit of {max_size} leaves no room: {len(RESERVED)} ids are reserved "
                        f"({', '.join(RESERVED)})")
    if not ordered:
        raise DataError("the text holds no tokens to build a vocabulary from")
    cut = room is not None and len(ordered) > room
    return Tokenizer(kind, RESERVED + tuple(ordered[:room] if cut else ordered), "unk" if cut else "refuse")
