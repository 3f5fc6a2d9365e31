"""``seq2seq(..., impl="unrolled")``: the same function, gradients and decoding as the LSTM-node
build, for any source and decoder length up to ``max_len``."""

from __future__ import annotations

import numpy as np
import pytest

from onnxforge.graphs.seq2seq import seq2seq
from onnxforge.runtime import Trainer, load
from onnxforge.runtime.errors import ConfigError

MAX = 7


@pytest.mark.parametrize("attention,layers", [("dot", 1), ("general", 2), (None, 1)])
def test_unrolled_equals_lstm_nodes_at_every_length(attention, layers):
    node = load(seq2seq(15, 13, 8, 8, layers=layers, attention=attention, seed=2, max_len=MAX), "cpu")
    unrolled_model = seq2seq(15, 13, 8, 8, layers=layers, attention=attention, seed=2, max_len=MAX, impl="unrolled")
    assert not [n for n in unrolled_model.graph.node if n.op_type == "LSTM"]
    unrolled = load(unrolled_model, "cpu")
    rng = np.random.default_rng(0)
    for s_len, t_len in [(MAX, MAX), (5, 2), (1, 1), (MAX, 1), (2, MAX)]:
        src = rng.integers(3, 15, (3, s_len))
        src[0, -1] = 0  # padding in the source
        dec = rng.integers(1, 13, (3, t_len))
        a = node.run({"src": src, "decoder_input": dec})
        b = unrolled.run({"src": src, "decoder_input": dec})
        for k in a:
            np.testing.assert_allclose(b[k], a[k], rtol=1e-5, atol=1e-6, err_msg=f"{k} S={s_len} T={t_len}")
    src = rng.integers(3, 15, (4, 5))
    np.testing.assert_array_equal(unrolled.decode(src, max_len=MAX - 1)[0], node.decode(src, max_len=MAX - 1)[0])


def test_unrolled_trains_like_lstm_nodes(tmp_path):
    """Three AdamW steps on a reversal task: both builds reach the same weights."""
    rng = np.random.default_rng(3)
    src = rng.integers(3, 12, (24, MAX - 1))
    data = ({"src": src}, src[:, ::-1].copy())
    weights = []
    for impl in ("node", "unrolled"):
        model = seq2seq(12, 12, 8, 8, attention="dot", seed=4, max_len=MAX, impl=impl)
        trainer = Trainer(model, tmp_path / impl, lr=1e-2, device="cpu", progress=False)
        trainer.fit(data, epochs=1, batch_size=8, shuffle=False)
        weights.append(trainer.parameters())
    for k in weights[0]:
        np.testing.assert_allclose(weights[1][k], weights[0][k], rtol=1e-4, atol=1e-5, err_msg=k)


def test_unknown_impl_is_refused():
    with pytest.raises(ConfigError, match="impl must be one of node, unrolled; got 'fused'"):
        seq2seq(10, 10, 4, 4, impl="fused")
