"""``build lstm --impl/--steps`` and ``build seq2seq --impl``: the unrolled builds from the command
line compute what the LSTM-node builds compute, and bad combinations are usage errors."""

from __future__ import annotations

import numpy as np
import pytest

from onnxforge.runtime import load
from onnxforge.runtime.modelio.files import get_metadata, load_model


def _ops(path) -> set:
    return {n.op_type for n in load_model(path).graph.node}


def test_lstm_unrolled_matches_node(cli_run, tmp_path):
    common = ["--inputs", 3, "--hidden", 5, "--classes", 4, "--seed", 7]
    res = cli_run("build", "lstm", *common, "--impl", "unrolled", "--steps", 6, "-o", tmp_path / "u.onnx")
    assert res.exit_code == 0, res.output
    assert cli_run("build", "lstm", *common, "-o", tmp_path / "n.onnx").exit_code == 0
    meta = get_metadata(load_model(tmp_path / "u.onnx"))["args"]
    assert (meta["impl"], meta["steps"]) == ("unrolled", 6)
    assert "LSTM" not in _ops(tmp_path / "u.onnx") and "LSTM" in _ops(tmp_path / "n.onnx")
    x = np.random.default_rng(0).standard_normal((2, 6, 3)).astype(np.float32)
    got = load(tmp_path / "u.onnx").run({"x": x})
    want = load(tmp_path / "n.onnx").run({"x": x})
    assert got.keys() == want.keys()
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-5, atol=1e-5)


def test_seq2seq_unrolled_matches_node(cli_run, tmp_path):
    common = ["--src-vocab", 9, "--tgt-vocab", 8, "--embed", 4, "--hidden", 6, "--max-len", 5]
    assert cli_run("build", "seq2seq", *common, "--impl", "unrolled", "-o", tmp_path / "u.onnx").exit_code == 0
    assert cli_run("build", "seq2seq", *common, "--impl", "node", "-o", tmp_path / "n.onnx").exit_code == 0
    assert get_metadata(load_model(tmp_path / "u.onnx"))["args"]["impl"] == "unrolled"
    assert "LSTM" not in _ops(tmp_path / "u.onnx") and "LSTM" in _ops(tmp_path / "n.onnx")
    rng = np.random.default_rng(1)
    feeds = {"src": rng.integers(3, 9, (2, 5)).astype(np.int64), "decoder_input": rng.integers(1, 8, (2, 5)).astype(np.int64)}
    got = load(tmp_path / "u.onnx").run(feeds)
    want = load(tmp_path / "n.onnx").run(feeds)
    assert got.keys() == want.keys()
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("args,message", [
    (["lstm", "--inputs", 3, "--classes", 4, "--impl", "unrolled"], "--impl unrolled needs --steps"),
    (["lstm", "--inputs", 3, "--classes", 4, "--impl", "scan"], "'scan' is not one of 'node', 'unrolled'"),
    (["lstm", "--inputs", 3, "--classes", 4, "--steps", 0], "0 is not in the range x>=1"),
    (["seq2seq", "--src-vocab", 9, "--tgt-vocab", 8, "--impl", "loop"], "'loop' is not one of 'node', 'unrolled'"),
])
def test_bad_impl_options(cli_run, tmp_path, args, message):
    res = cli_run("build", *args, "-o", tmp_path / "m.onnx")
    assert res.exit_code == 2
    assert message in res.output
    assert not (tmp_path / "m.onnx").exists()
