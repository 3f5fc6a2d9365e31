"""Issue 15: the encoder ignores padding. One source gives one answer at every pad width and in
every batch mix, in the LSTM-node and unrolled builds, in the served graph and in the trained
one, and the same answer as PyTorch's encoder over packed sequences."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from test_seq2seq import TorchSeq2Seq

from onnxforge.graphs.seq2seq import seq2seq
from onnxforge.runtime import Trainer, load

MAX = 12
SOURCE = np.array([5, 9, 3, 7, 4], np.int64)


def _padded(rows: list[np.ndarray], width: int) -> np.ndarray:
    out = np.zeros((len(rows), width), np.int64)
    for i, r in enumerate(rows):
        out[i, : len(r)] = r
    return out


@pytest.mark.parametrize("impl", ["node", "unrolled"])
@pytest.mark.parametrize("attention,layers", [("dot", 1), ("general", 2), (None, 2)])
def test_one_source_one_answer_at_every_pad_width_and_batch_mix(impl, attention, layers):
    model = seq2seq(15, 13, 8, 8, layers=layers, attention=attention, seed=2, max_len=MAX, impl=impl)
    session = load(model, "cpu")
    rng = np.random.default_rng(0)
    dec = np.array([[1, 4, 6, 2]], np.int64)
    others = [rng.integers(3, 15, n) for n in (1, 9, 12, 3)]
    first = None
    for width in (5, 6, 9, 12):
        for mix in ([], others[:1], others[1:3], others):
            if any(len(o) > width for o in mix):
                continue
            src = _padded([SOURCE, *mix], width)
            out = session.run({"src": src, "decoder_input": np.repeat(dec, len(src), 0)})
            got = {k: v[0][..., :5] if k == "attention" else v[0] for k, v in out.items()}
            if first is None:
                first = got
                continue
            for k in got:
                np.testing.assert_array_equal(got[k], first[k], err_msg=f"{k} at width {width}, {len(mix)} others")
            if attention is not None:
                assert not out["attention"][0][..., 5:].any()  # padding gets no attention at all
    tokens = [session.decode(_padded([SOURCE], w), max_len=8)[0][0].tolist() for w in (5, 8, 12)]
    assert tokens[0] == tokens[1] == tokens[2]


@pytest.mark.parametrize("attention,layers", [("dot", 1), ("general", 2)])
def test_both_builds_equal_pytorch_over_packed_sequences(attention, layers):
    rng = np.random.default_rng(1)
    rows = [rng.integers(3, 11, n) for n in (1, 4, 7, 2)]
    src = _padded(rows, 9)
    src[1, 1] = 0  # a PAD inside a row is read (a packed sequence runs up to its length)
    dec = rng.integers(1, 9, (4, 5))
    node = seq2seq(11, 9, 6, 8, layers, attention, seed=3, max_len=MAX)
    with torch.no_grad():
        logits, weights = TorchSeq2Seq(node)(torch.tensor(src), torch.tensor(dec))
    for impl in ("node", "unrolled"):
        model = seq2seq(11, 9, 6, 8, layers, attention, seed=3, max_len=MAX, impl=impl)
        out = load(model, "cpu").run({"src": src, "decoder_input": dec})
        np.testing.assert_allclose(out["logits"], logits.numpy(), atol=1e-5, rtol=0, err_msg=impl)
        np.testing.assert_allclose(out["attention"], weights.numpy(), atol=1e-6, rtol=0, err_msg=impl)


@pytest.mark.parametrize("impl", ["node", "unrolled"])
def test_the_trained_graph_ignores_padding_too(impl, tmp_path):
    """One SGD step on the same examples padded to two widths: the same loss and the same weights."""
    rng = np.random.default_rng(4)
    rows = [rng.integers(3, 11, n) for n in rng.integers(2, 7, 8)]
    tgt = np.zeros((8, 6), np.int64)
    for i, r in enumerate(rows):
        tgt[i, : len(r[:5])] = r[:5][::-1]
        tgt[i, len(r[:5])] = 2
    results = []
    for width in (7, MAX):
        model = seq2seq(11, 11, 6, 8, attention="dot", seed=5, max_len=MAX, impl=impl)
        trainer = Trainer(model, tmp_path / f"w{width}", optimizer="sgd", lr=0.5, progress=False, device="cpu")
        trainer.fit(({"src": _padded(rows, width)}, tgt), epochs=1, batch_size=8, shuffle=False)
        results.append((trainer.history[0]["loss"], trainer.parameters()))
        served = trainer.session().run({"src": _padded(rows, width), "decoder_input": np.ones((8, 1), np.int64)})
        results[-1] += (served["logits"],)
    (loss_a, weights_a, served_a), (loss_b, weights_b, served_b) = results
    assert loss_a == pytest.approx(loss_b, abs=1e-6)
    for k in weights_a:
        np.testing.assert_allclose(weights_b[k], weights_a[k], atol=1e-6, rtol=0, err_msg=k)
    np.testing.assert_allclose(served_b, served_a, atol=1e-6, rtol=0)
