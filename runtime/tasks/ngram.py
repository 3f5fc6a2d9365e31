"""The N-gram baseline a neural language model is compared with: interpolated Kneser-Ney (Chen and
Goodman, 1998), counted on the training text with the model's own tokenizer, so ``eval --ngram 3``
puts the two perplexities side by side on the same predicted words.

Each sentence reads ``BOS^(n-1) w1 .. wn EOS``; every word and the EOS are predicted (the
examples of :mod:`.language_model`). The highest order uses the counts, the lower orders the
continuation counts (how many distinct words precede an N-gram), each discounted by ``D``
(Ney's estimate ``n1 / (n1 + 2 n2)`` of that order) and interpolated with the order below, the
unigrams with the uniform distribution over the words that can be predicted (every id but PAD and
BOS), so no word has probability 0.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict

from onnxforge.runtime.data.tokenizers import BOS, EOS, Tokenizer
from onnxforge.runtime.errors import ConfigError, DataError
from onnxforge.runtime.tasks.generation import is_language_model
from onnxforge.runtime.tasks.language_model import sentences

__all__ = ["KneserNey", "ngram_perplexity"]

_FALLBACK_DISCOUNT = 0.75


def _discount(counts) -> float:
    n1 = sum(1 for c in counts if c == 1)
    n2 = sum(1 for c in counts if c == 2)
    return n1 / (n1 + 2 * n2) if n1 and n2 else _FALLBACK_DISCOUNT


class KneserNey:
    """An interpolated Kneser-Ney model of ``order`` over ids ``0 .. vocab_size - 1``."""

    def __init__(self, order: int, vocab_size: int):
        if isinstance(order, bool) or not isinstance(order, int) or order < 1:
            raise ConfigError(f"the N-gram order must be a positive integer; got {order!r}")
        if vocab_size < 3:
            raise ConfigError(f"an N-gram model needs a vocabulary beyond PAD and BOS; got {vocab_size} ids")
        self.order, self.predictable = order, vocab_size - 2
        # tables[m][context of m-1 ids] = {word: count}; discounts[m]
        self.tables: list[dict] = [dict() for _ in range(order + 1)]
        self.discounts = [_FALLBACK_DISCOUNT] * (order + 1)

    def _padded(self, ids) -> list[int]:
        return [BOS] * (self.order - 1) + list(ids) + [EOS]

    def fit(self, rows) -> KneserNey:
        """Count the sentences ``rows`` (lists of ids without BOS/EOS)."""
        n = self.order
        grams: list[Counter] = [Counter() for _ in range(n + 1)]
        for ids in rows:
            seq = self._padded(ids)
            for i in range(n - 1, len(seq)):
                grams[n][tuple(seq[i - n + 1 : i + 1])] += 1
        if not grams[n]:
            raise DataError("the N-gram model's training text holds no sentences")
        for m in range(n - 1, 0, -1):  # continuation counts: distinct words before each (m)-gram
            for gram in grams[m + 1]:
                grams[m][gram[1:]] += 1
        for m in range(1, n + 1):
            table: defaultdict[tuple, dict] = defaultdict(dict)
            for gram, count in grams[m].items():
                table[gram[:-1]][gram[-1]] = count
            self.tables[m] = {ctx: (words, sum(words.values())) for ctx, words in table.items()}
            self.discounts[m] = _discount(grams[m].values())
        return self

    def prob(self, word: int, context: tuple) -> float:
        """``P(word | context)`` (the last ``order - 1`` ids of ``context`` are read)."""
        context = tuple(context)[len(context) - (self.order - 1):] if self.order > 1 else ()
        p = 1.0 / self.predictable
        for m in range(1, self.order + 1):  # from the unigrams up, each interpolated with the one below
            entry = self.tables[m].get(context[len(context) - (m - 1):] if m > 1 else ())
            if entry is None:
                continue  # an unseen context: its order adds nothing
            words, total = entry
            d = self.discounts[m]
            p = max(words.get(word, 0) - d, 0.0) / total + d * len(words) / total * p
        return p

    def perplexity(self, rows) -> float:
        """``exp`` of the mean negative log-probability of every word and EOS of ``rows``."""
        total, count = 0.0, 0
        for ids in rows:
            seq = self._padded(ids)
            for i in range(self.order - 1, len(seq)):
                total -= math.log(self.prob(seq[i], tuple(seq[max(0, i - self.order + 1) : i])))
                count += 1
        if not count:
            raise DataError("the text holds no sentences to measure")
        return math.exp(total / count)


def ngram_perplexity(train_rows, test_rows, order: int, vocab_size: int) -> float:
    """The perplexity on ``test_rows`` of a Kneser-Ney model of ``order`` counted on ``train_rows``."""
    return KneserNey(order, vocab_size).fit(train_rows).perplexity(test_rows)


def ngram_for_model(card, test_path, order: int = 3, train_path=None) -> dict:
    """``{"ngram_order", "ngram_perplexity", "ngram_train"}``: the baseline for a language model
    (its card), counted on ``train_path`` or the text its vocabulary was built from (``args.vocab_from``),
    with the card's tokenizer, measured on the plain text ``test_path``."""
    from pathlib import Path

    if not is_language_model(card):
        raise ConfigError(f"--ngram compares a language model with an N-gram model; this model's task is {card.task!r}")
    tok = Tokenizer.from_card(card, "tokens")
    if tok is None:
        raise ConfigError("the model card has no tokenizer (build the model with --vocab-from a text file)")
    train_path = train_path or (card.args or {}).get("vocab_from")
    if not train_path:
        raise ConfigError("the model card does not name its training text (build nplm --vocab-from records it); "
                          "give it with --ngram-train TEXT")
    if not Path(train_path).is_file():
        raise DataError(f"the N-gram model's training text '{train_path}' does not exist; give it with --ngram-train TEXT")
    value = ngram_perplexity(sentences(train_path, tok), sentences(test_path, tok), order, len(tok.tokens))
    return {"ngram_order": order, "ngram_perplexity": value, "ngram_train": str(train_path)}
