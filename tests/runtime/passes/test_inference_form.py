"""A run trained on an unrolled LSTM or encoder-decoder exports the LSTM-node twin: the same
weights and function, in the form that runs fast at inference."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

from onnxforge.graphs import lstm, mlp, seq2seq
from onnxforge.runtime import Trainer, load
from onnxforge.runtime.passes.inference_form import inference_form
from onnxforge.runtime.modelio.files import get_metadata, set_metadata


def _with_weights(model, values: dict):
    out = onnx.ModelProto()
    out.CopyFrom(model)
    for t in out.graph.initializer:
        if t.name in values:
            t.CopyFrom(numpy_helper.from_array(values[t.name].astype(numpy_helper.to_array(t).dtype), t.name))
    return out


def _ops(model) -> set:
    return {n.op_type for n in model.graph.node}


def test_a_run_trained_unrolled_exports_lstm_nodes_with_the_trained_weights(tmp_path):
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((64, 6, 5)).astype(np.float32), rng.integers(0, 3, 64)
    source = lstm(5, hidden=8, classes=3, layers=2, dropout=0.1, seed=1, impl="unrolled", steps=6)
    trainer = Trainer(source, tmp_path / "run", device="cpu", progress=False)
    trainer.fit((x, y), epochs=2, batch_size=16)
    exported = onnx.load(str(tmp_path / "run" / "model.onnx"))
    assert "LSTM" in _ops(exported) and "LSTM" not in _ops(source)
    meta = get_metadata(exported)
    assert meta["args"]["impl"] == "node" and meta["trained_impl"] == "unrolled" and meta["trained"]["epochs"] == 2
    trained = trainer.parameters()
    for t in exported.graph.initializer:
        if t.name in trained:
            np.testing.assert_array_equal(numpy_helper.to_array(t), trained[t.name])
    reference = load(_with_weights(source, trained), device="cpu").run({"x": x})["logits"]
    np.testing.assert_allclose(load(exported, device="cpu").run({"x": x})["logits"], reference, rtol=1e-5, atol=1e-6)
    predicted = load(exported, device="cpu").run({"x": x})["logits"].argmax(1)
    assert trainer.evaluate((x, y))["accuracy"] == np.mean(predicted == y)


def test_encoder_decoder_twin_computes_the_same_logits_and_attention():
    model = seq2seq(12, 14, 8, 8, seed=3, max_len=6, impl="unrolled")
    twin = inference_form(model)
    assert "LSTM" in _ops(twin)
    rng = np.random.default_rng(1)
    feeds = {"src": rng.integers(1, 12, (4, 6)), "decoder_input": rng.integers(1, 14, (4, 6))}
    a, b = load(model, device="cpu").run(feeds), load(twin, device="cpu").run(feeds)
    for name in a:
        np.testing.assert_allclose(b[name], a[name], rtol=1e-5, atol=1e-6, err_msg=name)


def test_other_models_and_unknown_arguments_keep_their_form():
    plain = mlp(4, [3], 2)
    assert inference_form(plain).graph == plain.graph
    odd = lstm(5, hidden=4, classes=2, impl="unrolled", steps=3)
    set_metadata(odd, {"args": {**get_metadata(odd)["args"], "from_a_newer_version": 1}})
    assert inference_form(odd).graph == odd.graph
