"""LoRA runs of the Trainer and ``onnxforge train --lora``: only the adapters train, the files of the
run folder, checkpoints and resume."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from _lora_models import classifier, data, weights
from click.testing import CliRunner

from onnxforge.cli.main import cli
from onnxforge.runtime import Trainer
from onnxforge.runtime.adapters import LoRA, read_adapter
from onnxforge.runtime.errors import CheckpointError, ConfigError
from onnxforge.runtime.modelio.card import get_metadata

ADAPTER_NAMES = ["W1.lora_A", "W1.lora_B", "W2.lora_A", "W2.lora_B", "W3.lora_A", "W3.lora_B"]


def _train(tmp_path, name="run", epochs=3, **kw):
    path = tmp_path / "clf.onnx"
    if not path.exists():
        onnx.save(classifier(), path)
    trainer = Trainer(path, tmp_path / name, loss="cross-entropy", lr=0.01, progress=False, seed=3,
                      lora=kw.pop("lora", LoRA(4, alpha=8)), **kw)
    x, y = data()
    history = trainer.fit((x, y), (x, y), epochs=epochs, batch_size=32, shuffle=False)
    return trainer, history


def test_only_adapters_train_and_every_file_agrees(tmp_path):
    trainer, history = _train(tmp_path)
    run = tmp_path / "run"
    assert list(trainer.trainable) == ADAPTER_NAMES and trainer.backend_name == "onnx"
    assert history[-1]["loss"] < history[0]["loss"]
    # the checkpoint holds the adapters and their AdamW moments only
    with zipfile.ZipFile(run / "checkpoint") as z:
        keys = {n[:-4] for n in z.namelist() if n.startswith(("param/", "opt/"))}
    assert {k.split("/", 1)[1] for k in keys if k.startswith("param/")} == set(ADAPTER_NAMES)
    assert all(k.split("/")[-1] in ADAPTER_NAMES for k in keys)
    # model.lora.onnx: every base weight bit for bit the input's
    source, lora_model = weights(classifier()), weights(onnx.load(run / "model.lora.onnx"))
    for name, value in source.items():
        assert lora_model[name].tobytes() == value.tobytes(), name
    # adapters.onnx_adapter: A, and B with alpha/rank folded in
    stored = read_adapter(run / "adapters.onnx_adapter").parameters
    trained = trainer.parameters()
    assert sorted(stored) == sorted(ADAPTER_NAMES)
    for w in ("W1", "W2", "W3"):
        np.testing.assert_array_equal(stored[f"{w}.lora_A"], trained[f"{w}.lora_A"])
        np.testing.assert_allclose(stored[f"{w}.lora_B"], 2.0 * trained[f"{w}.lora_B"], rtol=1e-7)
        assert np.abs(trained[f"{w}.lora_B"]).max() > 0  # it trained
    # model.onnx: base + scale * A @ B in each weight's layout, computed here independently
    merged = weights(onnx.load(run / "model.onnx"))
    for w in ("W1", "W2", "W3"):
        delta = 2.0 * trained[f"{w}.lora_A"].astype(np.float64) @ trained[f"{w}.lora_B"]
        want = source[w] + (delta if w == "W1" else delta.T)
        np.testing.assert_allclose(merged[w], want, rtol=1e-6, atol=1e-6)
    for b in ("b1", "b2", "b3"):
        assert merged[b].tobytes() == source[b].tobytes()
    # the adapter model with the adapter fed equals the merged model; without it, the base
    x = data(16, seed=9)[0]
    lora_session = ort.InferenceSession(str(run / "model.lora.onnx"))
    with_adapter = lora_session.run(None, {"x": x, **stored})[0]
    plain = ort.InferenceSession(str(run / "model.onnx")).run(None, {"x": x})[0]
    np.testing.assert_allclose(with_adapter, plain, rtol=0, atol=1e-5 * np.abs(plain).max())
    base = ort.InferenceSession(classifier().SerializeToString()).run(None, {"x": x})[0]
    np.testing.assert_array_equal(lora_session.run(None, {"x": x})[0], base)
    # metrics.json and the card
    doc = json.loads((run / "metrics.json").read_text())
    adapters = (8 + 16) * 4 + (16 + 16) * 4 + (16 + 3) * 4
    assert doc["trainable_parameters"] == adapters
    assert doc["total_parameters"] == sum(v.size for v in source.values()) + adapters
    assert doc["config"]["lora"] == {"rank": 4, "alpha": 8.0, "targets": None}
    card = get_metadata(onnx.load(run / "model.onnx"))["lora"]
    assert (card["rank"], card["alpha"], card["weights"]) == (4, 8.0, ["W1", "W2", "W3"])


def test_resume_continues_to_the_same_adapters(tmp_path):
    whole, _ = _train(tmp_path, "whole", epochs=4)
    _train(tmp_path, "parts", epochs=2)
    resumed = Trainer.from_run(tmp_path / "parts", progress=False)
    assert resumed.lora is not None and resumed.lora.lora == LoRA(4, alpha=8.0)
    x, y = data()
    resumed.fit((x, y), (x, y), epochs=4, resume=True)
    a, b = whole.parameters(), resumed.parameters()
    assert sorted(a) == sorted(b) == sorted(ADAPTER_NAMES)
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=1e-6, atol=1e-7)
    with pytest.raises(CheckpointError, match="lora="):
        Trainer.from_run(tmp_path / "parts", progress=False, lora=LoRA(2)).fit((x, y), epochs=4, resume=True)


def test_lora_refuses_what_cannot_go_with_it(tmp_path):
    onnx.save(classifier(), tmp_path / "clf.onnx")
    with pytest.raises(ConfigError, match="lora needs the onnx backend"):
        Trainer(tmp_path / "clf.onnx", tmp_path / "r", backend="artifacts", lora=4)
    with pytest.raises(ConfigError, match="lora trains on one worker"):
        Trainer(tmp_path / "clf.onnx", tmp_path / "r", workers=2, strategy=object(), lora=4)
    with pytest.raises(ConfigError, match="freeze and lora"):
        Trainer(tmp_path / "clf.onnx", tmp_path / "r", freeze=["W1"], lora=4)
    with pytest.raises(ConfigError, match="'Z\\*' matches no weight"):
        Trainer(tmp_path / "clf.onnx", tmp_path / "r", lora=LoRA(4, targets="Z*"))


def test_cli_train_lora(tmp_path):
    onnx.save(classifier(), tmp_path / "clf.onnx")
    x, y = data()
    np.savez(tmp_path / "d.npz", x=x, y=y)
    args = ["train", str(tmp_path / "clf.onnx"), "--data", str(tmp_path / "d.npz"), "--loss", "cross-entropy",
            "--epochs", "2", "--out", str(tmp_path / "run"), "--lora", "2", "--lora-alpha", "4",
            "--lora-targets", "W[12]", "--json"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["trainable_parameters"] == (8 + 16) * 2 + (16 + 16) * 2
    assert doc["adapters"].endswith("adapters.onnx_adapter") and doc["lora_model"].endswith("model.lora.onnx")
    assert sorted(read_adapter(doc["adapters"]).parameters) == ADAPTER_NAMES[:4]
    bad = CliRunner().invoke(cli, args[:-7] + ["--lora-alpha", "4"])
    assert bad.exit_code == 2 and "--lora-alpha and --lora-targets need --lora RANK" in bad.output
