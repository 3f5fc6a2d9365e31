"""``.onnx_adapter`` files: our FlatBuffers writer and reader, and ONNX Runtime's own reader and
writer where the installed ONNX Runtime has them (1.20+: the CPython 3.13 leg). The tests that need
ONNX Runtime's LoRA API are defined only where it exists (not skipped: the 3.11 leg's onnxruntime
1.19 has none, and CI fails on skips there); the 3.13 leg runs them."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from _lora_models import classifier, forward, weights

from onnxforge.runtime.adapters import find_targets, read_adapter, with_adapters, write_adapter
from onnxforge.runtime.adapters.adapter_file import ort_writer
from onnxforge.runtime.errors import ModelError

ADAPTERS = {"W1.lora_A": np.arange(24, dtype=np.float32).reshape(8, 3) / 10,
            "W1.lora_B": -np.ones((3, 16), np.float32), "odd": np.arange(5, dtype=np.float32)}


def test_flatbuffers_round_trip(tmp_path):
    path = write_adapter(tmp_path / "a.onnx_adapter", ADAPTERS, adapter_version=3, model_version=7, use_ort=False)
    data = path.read_bytes()
    assert data[4:8] == b"TORT"
    back = read_adapter(path)
    assert (back.format_version, back.adapter_version, back.model_version) == (1, 3, 7)
    assert list(back.parameters) == list(ADAPTERS)
    for k, v in ADAPTERS.items():
        assert back.parameters[k].dtype == np.float32 and np.array_equal(back.parameters[k], v)


def test_damaged_files_are_refused(tmp_path):
    good = write_adapter(tmp_path / "a.onnx_adapter", ADAPTERS, use_ort=False).read_bytes()
    cases = {"notflat": b"hello world, not a flatbuffer", "short": good[:40], "empty": b""}
    for name, blob in cases.items():
        (tmp_path / name).write_bytes(blob)
        with pytest.raises(ModelError, match=f"adapter file '.*{name}'"):
            read_adapter(tmp_path / name)
    # a tensor whose dims claim more bytes than it holds
    raw = ADAPTERS["odd"].tobytes()
    at = good.find(raw)
    assert at > 0
    (tmp_path / "lying").write_bytes(good[: at - 4] + (3).to_bytes(4, "little") + good[at:])
    with pytest.raises(ModelError, match="declares tensor 'odd' of shape \\[5\\] \\(20 bytes\\) but holds 3 bytes"):
        read_adapter(tmp_path / "lying")
    with pytest.raises(ModelError, match="could not be read"):
        read_adapter(tmp_path / "missing.onnx_adapter")


def test_unsupported_dtype_is_a_clear_error(tmp_path):
    with pytest.raises(ModelError, match="adapter tensor 's' is <U1"):
        write_adapter(tmp_path / "a.onnx_adapter", {"s": np.array(["x"])}, use_ort=False)


if hasattr(ort, "LoraAdapter") and ort_writer() is not None:  # ONNX Runtime 1.20+ (the 3.13 leg)

    def _served(tmp_path):
        model = classifier()
        targets = find_targets(model, ["W1"])
        path = tmp_path / "m.lora.onnx"
        path.write_bytes(with_adapters(model, targets, as_inputs=True).SerializeToString())
        return model, ort.InferenceSession(str(path))

    def test_onnxruntime_reads_and_runs_our_flatbuffers_file(tmp_path):
        rng = np.random.default_rng(0)
        params = {"W1.lora_A": rng.normal(size=(8, 4)).astype(np.float32),
                  "W1.lora_B": rng.normal(size=(4, 16)).astype(np.float32)}
        path = write_adapter(tmp_path / "ours.onnx_adapter", params, adapter_version=2, use_ort=False)
        read = ort.AdapterFormat.read_adapter(str(path))
        assert read.get_format_version() == 1 and read.get_adapter_version() == 2
        got = {k: v.numpy() for k, v in read.get_parameters().items()}
        assert set(got) == set(params) and all(np.array_equal(got[k], params[k]) for k in params)
        model, session = _served(tmp_path)
        adapter = ort.LoraAdapter()
        adapter.Load(str(path))
        options = ort.RunOptions()
        options.add_active_adapter(adapter)
        x = rng.normal(size=(5, 8)).astype(np.float32)
        w = weights(model)
        w["W1"] = w["W1"] + params["W1.lora_A"].astype(np.float64) @ params["W1.lora_B"]
        np.testing.assert_allclose(session.run(None, {"x": x}, options)[0], forward(w, x), rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(session.run(None, {"x": x})[0], forward(weights(model), x), rtol=1e-4, atol=1e-4)

    def test_we_read_what_onnxruntime_writes(tmp_path):
        arrays = {k: np.array(v) for k, v in ADAPTERS.items()}
        path = write_adapter(tmp_path / "theirs.onnx_adapter", arrays, model_version=5, use_ort=True)
        back = read_adapter(path)
        assert back.model_version == 5
        assert all(np.array_equal(back.parameters[k], v) for k, v in ADAPTERS.items())
        # the arrays the OrtValues borrowed were not changed or freed under them
        assert all(np.array_equal(arrays[k], v) for k, v in ADAPTERS.items())
