"""The judged end-to-end run: an MLP whose activation is the plugin Swish learns the digits."""

from __future__ import annotations

import pytest

from onnxforge.graphs import mlp
from onnxforge.runtime import Trainer, load


@pytest.mark.slow
def test_swish_mlp_reaches_95_percent_on_held_out_digits(digits, tmp_path):
    (x_train, y_train), (x_test, y_test) = digits
    model = mlp(64, [128], 10, activation="swish", seed=0)
    assert any(n.domain == "onnxforge" and n.op_type == "Swish" for n in model.graph.node)
    trainer = Trainer(model, tmp_path / "run", lr=3e-3, schedule="cosine", progress=False, device="cpu")
    trainer.fit((x_train, y_train), (x_test, y_test), epochs=30, batch_size=32, overwrite=True)
    exported = load(tmp_path / "run" / "model.onnx")  # the exported file still holds the Swish node
    assert any(n.op_type == "Swish" for n in exported.model.graph.node)
    accuracy = float((exported.run({"x": x_test})["logits"].argmax(1) == y_test).mean())
    assert accuracy >= 0.95, accuracy
