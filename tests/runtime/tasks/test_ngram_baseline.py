"""The N-gram baseline and the language-model data: Kneser-Ney probabilities worked by hand and
summing to 1 in every context, next-word windows, perplexity against numpy."""

from __future__ import annotations

import numpy as np
import pytest

from onnxforge.runtime.data.tokenizers import BOS, EOS
from onnxforge.runtime.errors import ConfigError, DataError
from onnxforge.runtime.tasks.language_model import language_metrics, windows
from onnxforge.runtime.tasks.ngram import KneserNey, ngram_perplexity


def test_a_bigram_probability_worked_by_hand():
    # BOS 5 EOS / BOS 5 6 EOS: bigram counts (1,5)=2 (5,2)=1 (5,6)=1 (6,2)=1 -> D2 = 3/(3+2*1) = 0.6;
    # continuation counts 5:1 2:2 6:1 (total 4, 3 types) -> D1 = 2/(2+2*1) = 0.5; 5 words predictable
    lm = KneserNey(2, 7).fit([[5], [5, 6]])
    p_uni_6 = 0.5 / 4 + 0.5 * 3 / 4 / 5
    assert lm.prob(6, (5,)) == pytest.approx(0.4 / 2 + 0.6 * 2 / 2 * p_uni_6, rel=1e-12)
    assert lm.prob(6, (3,)) == pytest.approx(p_uni_6, rel=1e-12)  # an unseen context falls to the unigrams


@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_probabilities_sum_to_one_in_every_context(order):
    rng = np.random.default_rng(order)
    rows = [list(rng.integers(3, 12, rng.integers(1, 7))) for _ in range(60)]
    lm = KneserNey(order, 12).fit(rows)
    predictable = [EOS] + list(range(3, 12))
    contexts = [tuple(rng.integers(3, 12, order - 1)) for _ in range(20)] + [(BOS,) * (order - 1)]
    for ctx in contexts:
        assert sum(lm.prob(w, ctx) for w in predictable) == pytest.approx(1.0, abs=1e-9), ctx
    # perplexity is exp of the mean negative log-probability, computed here again
    logs = [np.log(lm.prob(s[i], tuple(s[i - order + 1 : i]) if order > 1 else ()))
            for r in rows[:5] for s in [[BOS] * (order - 1) + r + [EOS]] for i in range(order - 1, len(s))]
    assert lm.perplexity(rows[:5]) == pytest.approx(np.exp(-np.mean(logs)), rel=1e-12)


def test_more_context_fits_the_training_text_better():
    rng = np.random.default_rng(0)
    rows = [[3 + (i + k) % 5 for k in range(6)] for i in rng.integers(0, 5, 200)]
    ppl = [ngram_perplexity(rows, rows, n, 8) for n in (1, 2, 3)]
    assert ppl[0] > ppl[1] > ppl[2]


def test_windows_predict_every_word_and_the_end():
    x, y = windows([[7, 8, 9], [5]], 2)
    np.testing.assert_array_equal(x, [[BOS, BOS], [BOS, 7], [7, 8], [8, 9], [BOS, BOS], [BOS, 5]])
    np.testing.assert_array_equal(y, [7, 8, 9, EOS, 5, EOS])
    with pytest.raises(DataError, match="holds no sentences"):
        windows([], 2)


def test_perplexity_is_exp_of_the_mean_cross_entropy():
    rng = np.random.default_rng(3)
    logits, y = rng.standard_normal((50, 9)), rng.integers(0, 9, 50)
    z = logits - logits.max(axis=1, keepdims=True)
    nll = -(z - np.log(np.exp(z).sum(axis=1, keepdims=True)))[np.arange(50), y]
    assert language_metrics(logits, y)["perplexity"] == pytest.approx(np.exp(nll.mean()), rel=1e-12)


def test_bad_settings():
    with pytest.raises(ConfigError, match="order must be a positive integer"):
        KneserNey(0, 10)
    with pytest.raises(DataError, match="holds no sentences"):
        KneserNey(3, 10).fit([])
