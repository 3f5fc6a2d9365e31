"""LoRA on a model whose weights live in ONNX external data: trained from the memory-mapped files
(never loaded into protobuf messages), the same adapters as from the inline model, and every file of
the run folder written with its data beside it."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
from _lora_models import classifier, data, weights
from onnx import TensorProto

from onnxforge.runtime import Trainer
from onnxforge.runtime.adapters import LoRA, read_adapter


def _fit(model, folder, epochs=3):
    trainer = Trainer(model, folder, loss="cross-entropy", lr=0.01, progress=False, seed=2, lora=LoRA(4, alpha=8))
    x, y = data()
    trainer.fit((x, y), (x, y), epochs=epochs, batch_size=32, shuffle=False)
    return trainer


def test_external_weights_train_from_their_files(tmp_path):
    model = classifier()
    onnx.save_model(classifier(), tmp_path / "big.onnx", save_as_external_data=True, all_tensors_to_one_file=True,
                    location="big.onnx.data", size_threshold=0)
    external = _fit(tmp_path / "big.onnx", tmp_path / "run")
    assert set(external.external.arrays) == {"W1", "b1", "W2", "b2", "W3", "b3"}
    assert all(isinstance(a, np.memmap) for a in external.external.arrays.values())
    assert all(t.data_location == TensorProto.EXTERNAL and not t.raw_data for t in external.source.graph.initializer)
    inline = _fit(model, tmp_path / "inline")
    for name, value in inline.parameters().items():  # the same adapters, step for step
        np.testing.assert_allclose(external.parameters()[name], value, rtol=1e-5, atol=1e-6, err_msg=name)
    assert external.history[-1]["val_accuracy"] == inline.history[-1]["val_accuracy"]

    run = tmp_path / "run"
    for name in ("model.onnx", "model.lora.onnx", "source.onnx"):
        stored = onnx.load(run / name, load_external_data=False)
        assert all(t.data_location == TensorProto.EXTERNAL for t in stored.graph.initializer
                   if t.name in {"W1", "W2", "W3"}), name
        assert (run / f"{name}.data").is_file()
    base = weights(model)
    merged = weights(onnx.load(run / "model.onnx"))
    trained = external.parameters()
    for w in ("W1", "W2", "W3"):
        delta = 2.0 * trained[f"{w}.lora_A"].astype(np.float64) @ trained[f"{w}.lora_B"]
        np.testing.assert_allclose(merged[w], base[w] + (delta if w == "W1" else delta.T), rtol=1e-5, atol=1e-6)
    lora_weights = weights(onnx.load(run / "model.lora.onnx"))
    assert all(lora_weights[k].tobytes() == v.tobytes() for k, v in base.items())
    x = data(9, seed=3)[0]
    stored_adapters = read_adapter(run / "adapters.onnx_adapter").parameters
    with_adapter = ort.InferenceSession(str(run / "model.lora.onnx")).run(None, {"x": x, **stored_adapters})[0]
    plain = ort.InferenceSession(str(run / "model.onnx")).run(None, {"x": x})[0]
    np.testing.assert_allclose(with_adapter, plain, rtol=0, atol=1e-5 * np.abs(plain).max())

    resumed = Trainer.from_run(run, progress=False)
    assert resumed.external is not None
    resumed.fit(data(), epochs=4, resume=True)
    assert resumed.epoch == 4 and resumed.history[-1]["loss"] < external.history[0]["loss"]
