"""build seq2seq, train, eval --json and infer on an encoder-decoder, through click's CliRunner."""

from __future__ import annotations

import json

import numpy as np
import pytest

from onnxforge.runtime import load
from onnxforge.runtime.inference.decoding import decode, sequence_metrics
from onnxforge.samples import dates


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("dates")
    train, test = dates.make_dataset(2000, 200, seed=1)
    return dates.save_dataset(folder / "train.npz", train), dates.save_dataset(folder / "test.npz", test), test


@pytest.fixture(scope="module")
def trained(cli_run, data, tmp_path_factory):
    train, test, _ = data
    folder = tmp_path_factory.mktemp("model")
    res = cli_run("build", "seq2seq", "--vocab-from", train, "--embed", 16, "--hidden", 32, "--attention", "general",
                 "--max-len", 11, "-o", folder / "s2s.onnx", "--json")
    assert res.exit_code == 0, res.output
    built = json.loads(res.output)
    assert built["parameters"] > 0
    res = cli_run("train", folder / "s2s.onnx", "--data", train, "--val", test, "--epochs", 2, "--lr", 0.005,
                 "--device", "cpu", "--out", folder / "run", "--quiet", "--json")
    assert res.exit_code == 0, res.output
    result = json.loads(res.output)
    assert result["loss_function"] == "cross-entropy"
    assert {"val_exact_match", "val_token_accuracy", "val_loss"} <= set(result["final"])
    assert result["history"][-1]["loss"] < result["history"][0]["loss"]
    return folder / "run"


def test_eval_json_reports_sequence_metrics(cli_run, trained, data):
    _, test_path, test = data
    res = cli_run("eval", trained, "--data", test_path, "--json")
    assert res.exit_code == 0, res.output
    result = json.loads(res.output)
    assert set(result) == {"loss", "exact_match", "token_accuracy", "examples"} and result["examples"] == 200
    tokens, _ = decode(load(trained / "model.onnx", device="cpu"), test["src"], max_len=11)
    expected = sequence_metrics(tokens, test["tgt"])
    assert result["exact_match"] == pytest.approx(expected["exact_match"])
    assert result["token_accuracy"] == pytest.approx(expected["token_accuracy"])
    assert result["token_accuracy"] > 0.5


def test_infer_prints_text_and_saves_tokens_and_attention(cli_run, trained, data, tmp_path):
    _, test_path, test = data
    res = cli_run("infer", trained / "model.onnx", "--input", test_path, "-o", tmp_path / "out.npz")
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert lines[0].startswith(f"0: {test['text'][0]} -> ")
    assert lines[-2] == "... 180 more rows" and lines[-1] == f"wrote {tmp_path / 'out.npz'}"
    with np.load(tmp_path / "out.npz") as out:
        tokens, attention, text = out["tokens"], out["attention"], out["text"]
    assert tokens.shape[0] == 200 and attention.shape == (200, tokens.shape[1], test["src"].shape[1])
    assert lines[0].endswith(" -> " + text[0])
    assert [dates.decode_text(t, dates.tgt_vocab()) for t in tokens] == text.tolist()
    res = cli_run("infer", trained / "model.onnx", "--input", test_path, "--beam", 3, "--json")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    assert len(doc["sequences"]) == 200 and len(doc["text"]) == 200
    assert all(seq[-1] == 2 or len(seq) == 11 for seq in doc["sequences"])


def test_infer_reads_npy_of_token_ids_without_vocabulary(cli_run, tmp_path):
    res = cli_run("build", "seq2seq", "--src-vocab", 8, "--tgt-vocab", 6, "--embed", 4, "--hidden", 8,
                 "--attention", "none", "--max-len", 4, "-o", tmp_path / "m.onnx")
    assert res.exit_code == 0 and res.output.startswith(f"wrote {tmp_path / 'm.onnx'} (")
    np.save(tmp_path / "src.npy", np.array([[3, 4, 5], [6, 7, 0]], np.int64))
    res = cli_run("infer", tmp_path / "m.onnx", "--input", tmp_path / "src.npy")
    assert res.exit_code == 0, res.output
    tokens, _ = decode(load(tmp_path / "m.onnx", device="cpu"), np.array([[3, 4, 5], [6, 7, 0]]))
    for i, line in enumerate(res.output.splitlines()):
        assert line == f"{i}: " + " ".join(str(t) for t in tokens[i] if t != 0)


def test_errors_are_one_line(cli_run, tmp_path, data):
    res = cli_run("build", "seq2seq", "--embed", 4, "--hidden", 8, "-o", tmp_path / "m.onnx")
    assert res.exit_code == 2 and "give --src-vocab and --tgt-vocab, or --vocab-from" in res.output
    res = cli_run("build", "seq2seq", "--src-vocab", 3, "--tgt-vocab", 9, "-o", tmp_path / "m.onnx")
    assert res.exit_code == 2 and "--src-vocab" in res.output
    res = cli_run("build", "seq2seq", "--vocab-from", data[0], "--src-vocab", 9, "-o", tmp_path / "m.onnx")
    assert res.exit_code == 2 and f"--src-vocab 9 disagrees with the {len(dates.src_vocab())} tokens" in res.output
    np.savez(tmp_path / "novocab.npz", src=np.ones((2, 3), np.int64))
    res = cli_run("build", "seq2seq", "--vocab-from", tmp_path / "novocab.npz", "-o", tmp_path / "m.onnx")
    assert res.exit_code == 2  # DataError
    assert res.output.strip() == f"Error: '{tmp_path / 'novocab.npz'}' has no arrays 'src_vocab' and 'tgt_vocab' (one string per token id)"
    res = cli_run("build", "seq2seq", "--src-vocab", 8, "--tgt-vocab", 6, "-o", tmp_path / "m.onnx")
    assert res.exit_code == 0
    np.savez(tmp_path / "bad.npz", text=np.array(["a"]))
    res = cli_run("infer", tmp_path / "m.onnx", "--input", tmp_path / "bad.npz")
    assert res.exit_code == 2 and res.output.startswith("Error: ") and "'src'" in res.output
    np.savez(tmp_path / "big.npz", src=np.array([[3, 99]]), tgt=np.array([[3, 2]]))
    msg = "Error: 'src' holds token id 99; the model's source vocabulary has ids 0 to 7"
    res = cli_run("eval", tmp_path / "m.onnx", "--data", tmp_path / "big.npz")
    assert res.exit_code == 2 and res.output.strip() == msg
    res = cli_run("infer", tmp_path / "m.onnx", "--input", tmp_path / "big.npz")
    assert res.exit_code == 2 and res.output.strip() == msg
    np.savez(tmp_path / "badlabel.npz", src=np.array([[3, 4]]), tgt=np.array([[3, 9]]))
    res = cli_run("train", tmp_path / "m.onnx", "--data", tmp_path / "badlabel.npz", "--out", tmp_path / "r", "--quiet")
    assert res.exit_code == 2 and res.output.strip() == "Error: 'tgt' holds token id 9; the model's target vocabulary has ids 0 to 5"
