"""Weights as files: safetensors written and read per the format's specification (checked byte by
byte against a file laid out by hand), .npz, and loading weights into a model with clear errors."""

from __future__ import annotations

import json
import struct

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from onnxforge.graphs import convnet, mlp
from onnxforge.runtime import load
from onnxforge.runtime.errors import DataError, ModelError
from onnxforge.runtime.modelio.weights import (apply_weights, load_weights, model_weights, read_safetensors, save_weights,
                                       write_safetensors)


def hand_made_safetensors(tensors: dict) -> bytes:
    """The layout the safetensors specification describes, written independently of onnxforge."""
    header, data, offset = {}, b"", 0
    codes = {"float32": "F32", "int64": "I64", "float64": "F64", "bool": "BOOL", "float16": "F16"}
    for name, value in tensors.items():
        raw = value.astype(value.dtype.newbyteorder("<")).tobytes()
        header[name] = {"dtype": codes[value.dtype.name], "shape": list(value.shape),
                        "data_offsets": [offset, offset + len(raw)]}
        data += raw
        offset += len(raw)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + data


def test_safetensors_bytes_follow_the_specification(tmp_path):
    tensors = {"fc1.weight": np.arange(6, dtype=np.float32).reshape(2, 3), "step": np.array([7], np.int64),
               "mask": np.array([True, False]), "half": np.array([1.5], np.float16), "scalar": np.array(2.5)}
    path = write_safetensors(tensors, tmp_path / "w.safetensors")
    assert path.read_bytes() == hand_made_safetensors(tensors)
    (tmp_path / "h.safetensors").write_bytes(hand_made_safetensors(tensors))
    back, meta = read_safetensors(tmp_path / "h.safetensors")
    assert meta == {} and list(back) == list(tensors)
    for name, value in tensors.items():
        assert back[name].dtype == value.dtype and back[name].shape == value.shape
        np.testing.assert_array_equal(back[name], value)


def test_metadata_and_header_alignment(tmp_path):
    path = write_safetensors({"a": np.ones(3, np.float32)}, tmp_path / "w.safetensors", {"format": "onnxforge"})
    raw = path.read_bytes()
    (size,) = struct.unpack("<Q", raw[:8])
    assert size % 8 == 0 and json.loads(raw[8:8 + size])["__metadata__"] == {"format": "onnxforge"}
    assert read_safetensors(path)[1] == {"format": "onnxforge"}


@pytest.mark.parametrize("suffix", [".npz", ".safetensors"])
def test_export_then_import_gives_the_same_model(suffix, tmp_path):
    source = convnet((1, 8, 8), (4,), classes=3, batchnorm=True, seed=1)
    other = convnet((1, 8, 8), (4,), classes=3, batchnorm=True, seed=2)
    info = save_weights(source, tmp_path / f"w{suffix}")
    assert info["tensors"] == len(model_weights(source))
    updated, replaced = apply_weights(other, load_weights(tmp_path / f"w{suffix}"))
    assert sorted(replaced) == sorted(model_weights(source))
    x = np.random.default_rng(0).standard_normal((4, 1, 8, 8)).astype(np.float32)
    np.testing.assert_array_equal(load(updated).run({"x": x})["logits"], load(source).run({"x": x})["logits"])


def test_wrong_weights_are_refused_with_the_tensor_named(tmp_path):
    model = mlp(4, [3], 2)
    weights = model_weights(model)
    with pytest.raises(ModelError, match=r"weight 'fc1.weight': the model has shape \[3, 4\], the file \[4, 3\]"):
        apply_weights(model, {**weights, "fc1.weight": weights["fc1.weight"].T})
    with pytest.raises(ModelError, match="tensors the model lacks: conv9.weight"):
        apply_weights(model, {**weights, "conv9.weight": np.ones(2, np.float32)})
    with pytest.raises(ModelError, match="lacks the model's tensors fc2.bias"):
        apply_weights(model, {k: v for k, v in weights.items() if k != "fc2.bias"})
    partial, replaced = apply_weights(model, {"fc2.bias": np.ones(2, np.float32)}, strict=False)
    assert replaced == ["fc2.bias"]
    assert numpy_helper.to_array(next(t for t in partial.graph.initializer if t.name == "fc2.bias")).tolist() == [1, 1]


def test_broken_files_raise_data_errors(tmp_path):
    (tmp_path / "short.safetensors").write_bytes(b"\x01")
    with pytest.raises(DataError, match="not a safetensors file"):
        read_safetensors(tmp_path / "short.safetensors")
    header = json.dumps({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 8]}}).encode()
    (tmp_path / "bad.safetensors").write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 8)
    with pytest.raises(DataError, match="tensor 'a' has data offsets"):
        read_safetensors(tmp_path / "bad.safetensors")
    with pytest.raises(DataError, match="must end in .npz or .safetensors"):
        save_weights(mlp(2, [2], 2), tmp_path / "w.bin")
