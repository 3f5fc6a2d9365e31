"""Encoder-decoders (task "seq2seq", ``graphs/seq2seq.py``): ``source<TAB>target`` text, data
``src``/``tgt`` made into ``(src, decoder_input = BOS + tgt[:-1])`` and ``y = tgt``; the loss is
teacher-forced, ``exact_match`` and ``token_accuracy`` come from greedy decoding, answers are the
decoded targets."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Callable

import numpy as np

from onnxforge.runtime.data import text
from onnxforge.runtime.data.datasets import Dataset
from onnxforge.runtime.data.tokenizers import Tokenizer
from onnxforge.runtime.errors import DataError
from onnxforge.runtime.inference.decoding import decode, prepare_seq2seq_arrays, sequence_metrics
from onnxforge.runtime.modelio.card import ModelCard
from onnxforge.runtime.tasks.task import NO_TOKENIZER, Task, text_width

__all__ = ["Seq2Seq", "SRC"]

SRC = "src"  # the encoder's input


def _trim(ids: np.ndarray) -> np.ndarray:
    """Drop the all-PAD columns at the end (keeping at least one)."""
    used = np.flatnonzero(ids.any(axis=0))
    return ids[:, : (int(used[-1]) + 1 if used.size else 1)]


class Seq2Seq(Task):
    name = "seq2seq"
    ignore_index = 0
    decodes = True
    confusion_report = False
    src_arrays = True

    def run_metrics(self, session: Any, dataset: Dataset, batch_size: int = 512) -> dict:
        if dataset.y is None:
            raise DataError(f"{dataset.source}: decoding metrics need the target sequences")
        tokens, _ = decode(session, dataset.inputs[SRC], max_len=int(dataset.y.shape[1]), batch_size=batch_size)
        return sequence_metrics(tokens, dataset.y)

    def preparer(self, card: ModelCard) -> Callable[[dict], dict]:
        return functools.partial(prepare_seq2seq_arrays, card=card)

    def tokenizers(self, card: ModelCard) -> tuple[Tokenizer, Tokenizer]:
        src, tgt = Tokenizer.from_card(card, "src_tokens"), Tokenizer.from_card(card, "tgt_tokens")
        if src is None or tgt is None:
            raise DataError(NO_TOKENIZER)
        return src, tgt

    def text_dataset(self, path: Path, card: ModelCard, inputs: list, progress: bool) -> Dataset:
        """``source<TAB>target`` lines; a dynamic-length build's ids lose their all-PAD end columns."""
        src, tgt = self.tokenizers(card)
        unrolled = (card.args or {}).get("impl") == "unrolled"
        arrays = text.pairs_arrays(path, src, tgt, src_width=card.max_len if unrolled else None, tgt_width=card.max_len,
                                   progress=progress)
        if not unrolled:
            arrays["src"], arrays["tgt"] = _trim(arrays["src"]), _trim(arrays["tgt"])
        arrays = prepare_seq2seq_arrays(arrays, card)
        return Dataset({i.name: arrays[i.name] for i in inputs}, arrays["y"], str(path))

    def text_feeds(self, session: Any, texts: list[str], where: Callable[[int], str]) -> dict:
        src, _ = self.tokenizers(session.card)
        return {SRC: src.encode_batch(texts, width=text_width(session.card), where=where)}

    def answers(self, session: Any, feeds: dict, *, beam: int = 1, max_len: int | None = None,
                batch_size: int = 256) -> list[str]:
        _, tgt = self.tokenizers(session.card)
        tokens, _ = decode(session, feeds[SRC], max_len=max_len, beam=beam, batch_size=batch_size)
        return [tgt.decode(row) for row in tokens]
