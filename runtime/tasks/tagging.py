"""Tagging (task "tagging"): a label per step of a sequence (an LSTM with ``--head tagger``);
padding id 0 is left out of loss and accuracy. Built on a text's vocabulary with as many classes
as words, a tagger is a language model: it predicts each next word (``generate``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from onnxforge.runtime.data import text
from onnxforge.runtime.data.datasets import Dataset
from onnxforge.runtime.data.tokenizers import BOS
from onnxforge.runtime.modelio.card import ModelCard
from onnxforge.runtime.tasks.classification import Classification

__all__ = ["Tagging"]


class Tagging(Classification):
    name = "tagging"
    ignore_index = 0
    confusion_report = False

    def reads_image(self, session: Any) -> bool:
        return False

    def text_dataset(self, path: Path, card: ModelCard, inputs: list, progress: bool) -> Dataset:
        """Plain lines: each word's tag is the next word (a per-step language model)."""
        src, _ = self.tokenizers(card)
        x, y = text.corpus_arrays(path, src, width=card.args.get("steps"), progress=progress)
        return Dataset({inputs[0].name: x}, y, str(path))

    def predicts_next_word(self, card: ModelCard) -> bool:
        return bool(card.tokens) and card.classes == len(card.tokens or ())

    def next_word_logits(self, session: Any, history: list[int]) -> np.ndarray:
        """The logits [vocab] of the word after ``history``: the tagger's output at its last step."""
        card = session.card
        name, out = session.inputs[0].name, card.output or session.outputs[0].name
        seq = [BOS] + list(history)
        steps = (card.args or {}).get("steps")
        if steps:  # a fixed-length LSTM reads the last `steps` ids, PAD after them (it is causal)
            seq = seq[-int(steps):]
            ids = np.zeros((1, int(steps)), np.int64)
            ids[0, : len(seq)] = seq
        else:
            ids = np.array([seq], np.int64)
        return session.run({name: ids}, [out])[out][0, len(seq) - 1]
