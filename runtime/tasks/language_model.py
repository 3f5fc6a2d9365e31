"""Language models (task "language_model", the NPLM of ``graphs/nplm.py``; and the LSTM tagger
language model, task "tagging" with a tokenizer): next-word windows from plain text, perplexity,
and text sampled one word at a time.

Plain text is one sentence a line. A sentence ``w1 .. wn`` gives ``n + 1`` examples for a model
reading the ``context`` previous ids: ``(BOS .. BOS w1 .. w_{i-1}) -> w_i`` and the last one ``-> EOS``
(positions before the sentence's start hold BOS), so every word and the end are predicted once.
"""

from __future__ import annotations

import numpy as np

from onnxforge.runtime.data import text
from onnxforge.runtime.data.tokenizers import BOS, EOS, PAD, UNK, Tokenizer
from onnxforge.runtime.errors import ConfigError, DataError, ModelError
from onnxforge.runtime.tasks.losses import numpy_loss

__all__ = ["TASK", "sentences", "windows", "corpus_windows", "language_metrics", "is_language_model",
           "next_word_logits", "generate", "prompt_windows", "continue_windows"]

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


def is_language_model(card) -> bool:
    """A model that predicts the next word of text: an NPLM, or an LSTM tagger built on a text's vocabulary."""
    if card.task == TASK:
        return True
    return card.task == "tagging" and bool(card.tokens) and card.classes == len(card.tokens)


def next_word_logits(session, history: list[int]) -> np.ndarray:
    """The logits [vocab] of the word after ``history`` (ids of the text so far, without BOS)."""
    card = session.card
    args = card.args or {}
    name = session.inputs[0].name
    out = card.output or session.outputs[0].name
    if card.task == TASK:
        context = int(args["context"])
        window = ([BOS] * context + list(history))[-context:]
        return session.run({name: np.array([window], np.int64)}, [out])[out][0]
    seq = [BOS] + list(history)
    steps = args.get("steps")
    if steps:  # a fixed-length LSTM reads the last `steps` ids, PAD after them (it is causal)
        seq = seq[-int(steps):]
        ids = np.zeros((1, int(steps)), np.int64)
        ids[0, : len(seq)] = seq
    else:
        ids = np.array([seq], np.int64)
    return session.run({name: ids}, [out])[out][0, len(seq) - 1]


def generate(session, prompt: str = "", *, max_len: int = 20, temperature: float = 1.0, seed: int = 0) -> list[int]:
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
    words = [[] for _ in range(len(window))]
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
