"""Language models (task "language_model", the NPLM of ``graphs/nplm.py``; and the LSTM tagger
language model, task "tagging" with a tokenizer): next-word windows from plain text, perplexity,
and text sampled one word at a time.

Plain text is one sentence a line. A sentence ``w1 .. wn`` gives ``n + 1`` examples for a model
reading the ``context`` previous ids: ``(BOS .. BOS w1 .. w_{i-1}) -> w_i`` and the last one ``-> EOS``
(positions before the sentence's start hold BOS), so every word and the end are predicted once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np

from onnxforge.runtime.data import text
from onnxforge.runtime.data.datasets import Dataset
from onnxforge.runtime.data.tokenizers import BOS, EOS, PAD, UNK, Tokenizer
from onnxforge.runtime.errors import DataError
from onnxforge.runtime.modelio.card import ModelCard
from onnxforge.runtime.tasks.losses import numpy_loss
from onnxforge.runtime.tasks.task import Task

__all__ = ["TASK", "LanguageModel", "sentences", "windows", "corpus_windows", "language_metrics", "prompt_windows",
           "continue_windows"]

TASK = "language_model"


def sentences(path, tokenizer: Tokenizer, *, progress: bool = False) -> list[list[int]]:
    """The ids of every line of a plain text file (no BOS/EOS); unknown words by the tokenizer's rule."""
    lines = text.read_lines(path, progress=progress)
    return [tokenizer.encode(t, f"'{path}' line {number}") for number, t in lines]


def windows(rows: list[list[int]], context: int) -> tuple[np.ndarray, np.ndarray]:
    """``(x [M, context], y [M])`` int64: each row's next-word examples (see the module docstring)."""
    xs, ys = [], []
    for ids in rows:
        seq = np.array([BOS] * context + list(ids) + [EOS], np.int64)
        xs.append(np.lib.stride_tricks.sliding_window_view(seq[:-1], context))
        ys.append(seq[context:])
    if not xs:
        raise DataError("the text holds no sentences")
    return np.concatenate(xs).astype(np.int64), np.concatenate(ys).astype(np.int64)


def corpus_windows(path, tokenizer: Tokenizer, context: int, *, progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """:func:`windows` of a plain text file."""
    return windows(sentences(path, tokenizer, progress=progress), context)


def language_metrics(output: np.ndarray, y: np.ndarray, ignore_index=None) -> dict:
    """``accuracy`` of the most probable next word and ``perplexity``: ``exp`` of the mean
    cross-entropy (natural log) over the predicted words."""
    pred = output.argmax(axis=-1)
    keep = y != ignore_index if ignore_index is not None else np.ones(y.shape, bool)
    total = int(keep.sum())
    return {"accuracy": float((pred[keep] == y[keep]).sum() / total) if total else 0.0,
            "perplexity": float(np.exp(numpy_loss("cross-entropy", output, y, ignore_index)))}


def prompt_windows(tokenizer: Tokenizer, texts: list[str], context: int, where=None) -> np.ndarray:
    """``[N, context]`` ids: the last ``context`` words of each text (BOS before a short one),
    what an NPLM reads to continue it."""
    rows = [tokenizer.encode(t, where(i) if where else f"text {i + 1}") for i, t in enumerate(texts)]
    return np.array([([BOS] * context + r)[-context:] for r in rows], np.int64).reshape(len(rows), context)


def continue_windows(session, x: np.ndarray, max_len: int = 20) -> list[list[int]]:
    """The most probable continuation of each window ``x [N, context]`` (an NPLM), word by word until
    EOS or ``max_len`` words, all rows at once."""
    card = session.card
    name, out = session.inputs[0].name, card.output or session.outputs[0].name
    window = np.asarray(x, np.int64).copy()
    words: list[list[int]] = [[] for _ in range(len(window))]
    done = np.zeros(len(window), bool)
    never = [PAD, BOS] + ([UNK] if (card.tokenizer or {}).get("unknown") != "unk" else [])
    for _ in range(int(max_len)):
        logits = np.asarray(session.run({name: window}, [out])[out], np.float64)
        logits[:, never] = -np.inf
        nxt = logits.argmax(axis=1)
        done |= nxt == EOS
        for i in np.flatnonzero(~done):
            words[i].append(int(nxt[i]))
        if done.all():
            break
        window = np.concatenate([window[:, 1:], nxt[:, None]], axis=1)
    return words


class LanguageModel(Task):
    """The next word from the ``context`` previous ones (``graphs/nplm.py``): accuracy and perplexity;
    a text's answer is its most probable continuation."""
    name = TASK
    confusion_report = False

    def metrics(self, output: np.ndarray, y: np.ndarray) -> dict:
        return language_metrics(output, y, self.ignore_index)

    def text_dataset(self, path: Path, card: ModelCard, inputs: list, progress: bool) -> Dataset:
        """Plain lines: next-word windows of the context width."""
        src, _ = self.tokenizers(card)
        x, y = corpus_windows(path, src, int(card.args["context"]), progress=progress)
        return Dataset({inputs[0].name: x}, y, str(path))

    def text_feeds(self, session: Any, texts: list[str], where: Callable[[int], str]) -> dict:
        """The last words of each text, what the model reads to continue it."""
        src, _ = self.tokenizers(session.card)
        return {session.inputs[0].name: prompt_windows(src, texts, int(session.card.args["context"]), where)}

    def answers(self, session: Any, feeds: dict, *, beam: int = 1, max_len: int | None = None,
                batch_size: int = 256) -> list[str]:
        tok, _ = self.tokenizers(session.card)
        found = continue_windows(session, feeds[session.inputs[0].name], max_len or 20)
        return [tok.decode(ids) for ids in found]

    def predicts_next_word(self, card: ModelCard) -> bool:
        return True

    def next_word_logits(self, session: Any, history: list[int]) -> np.ndarray:
        """The logits [vocab] of the word after ``history``: the model reads its last ``context`` ids."""
        card = session.card
        name, out = session.inputs[0].name, card.output or session.outputs[0].name
        context = int((card.args or {})["context"])
        window = ([BOS] * context + list(history))[-context:]
        return session.run({name: np.array([window], np.int64)}, [out])[out][0]
