"""Text sampled one word at a time from a model that predicts the next word (a task whose
``predicts_next_word`` holds: the NPLM, an LSTM tagger built on a text's vocabulary)."""

from __future__ import annotations

from typing import Any

import numpy as np

from onnxforge.runtime.data.tokenizers import BOS, EOS, PAD, UNK, Tokenizer
from onnxforge.runtime.errors import ConfigError, ModelError
from onnxforge.runtime.modelio.card import ModelCard
from onnxforge.runtime.tasks.registry import task_of

__all__ = ["is_language_model", "next_word_logits", "generate"]


def is_language_model(card: ModelCard) -> bool:
    """A model that predicts the next word of text: an NPLM, or an LSTM tagger built on a text's vocabulary."""
    return task_of(card).predicts_next_word(card)


def next_word_logits(session: Any, history: list[int]) -> np.ndarray:
    """The logits [vocab] of the word after ``history`` (ids of the text so far, without BOS)."""
    return task_of(session.card).next_word_logits(session, history)


def generate(session: Any, prompt: str = "", *, max_len: int = 20, temperature: float = 1.0, seed: int = 0) -> list[int]:
    """Word ids sampled after ``prompt`` until EOS or ``max_len`` words: each from
    ``softmax(logits / temperature)`` (``temperature`` 0: the most probable word), drawn by a
    generator seeded with ``seed``. PAD and BOS are never drawn, nor UNK by a model whose
    vocabulary holds every training word (it never saw UNK)."""
    card = session.card
    if not is_language_model(card):
        raise ModelError(f"generate needs a language model (build nplm, or build lstm --head tagger --vocab-from a "
                         f"text); this model's task is {card.task!r}")
    tok = Tokenizer.from_card(card, "tokens")
    if tok is None:
        raise ModelError("the model card has no tokenizer (build the model with --vocab-from a text file)")
    if isinstance(max_len, bool) or not isinstance(max_len, (int, np.integer)) or max_len < 1:
        raise ConfigError(f"max_len must be a positive integer; got {max_len!r}")
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not temperature >= 0:
        raise ConfigError(f"temperature must be a number >= 0; got {temperature!r}")
    history = tok.encode(prompt, "prompt")
    never = [PAD, BOS] + ([UNK] if tok.unknown != "unk" else [])
    rng = np.random.default_rng(seed)
    words: list[int] = []
    for _ in range(int(max_len)):
        logits = np.asarray(next_word_logits(session, history), np.float64)
        logits[never] = -np.inf
        if temperature == 0:
            nxt = int(logits.argmax())
        else:
            z = logits / float(temperature)
            p = np.exp(z - z.max())
            nxt = int(rng.choice(len(p), p=p / p.sum()))
        if nxt == EOS:
            break
        words.append(nxt)
        history.append(nxt)
    return words
