"""threads="auto": FLOP estimates checked by hand, the choice made in Trainer.fit and load()."""

from __future__ import annotations

import numpy as np
import pytest

from onnxforge.graphs import mlp
from onnxforge.graphs.convnet import convnet
from onnxforge.graphs.lstm import lstm
from onnxforge.runtime import Trainer, load
from onnxforge.runtime.ort import threads as _threads
from onnxforge.runtime.ort.threads import AUTO_THRESHOLD_FLOPS, auto_threads, forward_flops
from onnxforge.runtime.errors import ConfigError


def test_mlp_flops_by_hand():
    assert forward_flops(mlp(64, [128], 10), {"x": (32, 64)}) == 2 * 32 * (64 * 128 + 128 * 10)


def test_convnet_flops_by_hand():
    # 3x3 same convolutions: 1->4 channels on 8x8, pool 2, 4->8 on 4x4, pool 2, then 8*2*2 -> 10
    model = convnet((1, 8, 8), (4, 8), 3, 2, (), 10)
    want = 2 * 5 * (4 * 8 * 8 * 1 * 9 + 8 * 4 * 4 * 4 * 9 + 8 * 2 * 2 * 10)
    assert forward_flops(model, {"x": (5, 1, 8, 8)}) == want


def test_lstm_flops_node_and_unrolled():
    n, t, i, h = 3, 6, 5, 7
    node = forward_flops(lstm(i, hidden=h, classes=4), {"x": (n, t, i)})
    assert node == 2 * t * n * 4 * h * (i + h) + 2 * n * h * 4
    unrolled = forward_flops(lstm(i, hidden=h, classes=4, impl="unrolled", steps=t), {"x": (n, t, i)})
    # the unrolled build skips the first step's recurrent product (its state is zero)
    assert node - 2 * n * h * 4 * h <= unrolled <= node


def test_auto_picks_one_thread_below_the_threshold(monkeypatch):
    monkeypatch.setattr(_threads.os, "cpu_count", lambda: 6)
    small, work = auto_threads(mlp(64, [128], 10), {"x": (64, 64)}, training=True)
    assert small == 1 and work == 3 * 2 * 64 * (64 * 128 + 128 * 10) < AUTO_THRESHOLD_FLOPS
    large, work = auto_threads(mlp(784, [1024, 1024], 10), {"x": (256, 784)}, training=True)
    assert large == 6 and work >= AUTO_THRESHOLD_FLOPS
    # one inference call of the same network at batch 1 is small
    assert auto_threads(mlp(784, [1024, 1024], 10), {"x": (1, 784)}, training=False)[0] == 1


def _options(session):
    return session._sess.get_session_options()


def test_trainer_resolves_auto_in_fit(tmp_path, monkeypatch):
    monkeypatch.setattr(_threads.os, "cpu_count", lambda: 2)
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((64, 8)).astype(np.float32), rng.integers(0, 3, 64)
    small = Trainer(mlp(8, [4], 3), tmp_path / "a", progress=False)
    assert small.threads == "auto" and small.intra_op_threads is None
    small.fit((x, y), epochs=1, batch_size=16)
    assert small.intra_op_threads == 1
    assert _options(small.session()).intra_op_num_threads == 1
    # a large step: every core; an explicit number is kept as given
    monkeypatch.setattr(_threads, "AUTO_THRESHOLD_FLOPS", 1.0)
    big = Trainer(mlp(8, [4], 3), tmp_path / "b", progress=False)
    big.fit((x, y), epochs=1, batch_size=16)
    assert big.intra_op_threads == 2
    fixed = Trainer(mlp(8, [4], 3), tmp_path / "c", threads=3, progress=False)
    fixed.fit((x, y), epochs=1, batch_size=16)
    assert fixed.intra_op_threads == 3 and _options(fixed.session()).intra_op_num_threads == 3


def test_load_auto_and_explicit(monkeypatch):
    monkeypatch.setattr(_threads.os, "cpu_count", lambda: 2)
    assert _options(load(mlp(8, [4], 3))).intra_op_num_threads == 1
    assert _options(load(mlp(8, [4], 3), threads=2)).intra_op_num_threads == 2
    monkeypatch.setattr(_threads, "AUTO_THRESHOLD_FLOPS", 1.0)
    assert _options(load(mlp(8, [4], 3))).intra_op_num_threads == 2


@pytest.mark.parametrize("bad", [0, -1, "many", 1.5, True])
def test_bad_threads(tmp_path, bad):
    with pytest.raises(ConfigError, match="threads must be 'auto'"):
        Trainer(mlp(8, [4], 3), tmp_path / "run", threads=bad, progress=False)
    with pytest.raises(ConfigError, match="threads must be 'auto'"):
        load(mlp(8, [4], 3), threads=bad)
