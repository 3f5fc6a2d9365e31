"""Weights as files: safetensors written and read with the safetensors library (checked against a
reader and a writer of the format's specification written here by hand), .npz, loading weights
into a model with clear errors, and malformed headers fuzzed into one typed error line."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
from onnx import numpy_helper

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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


CODES = {"F32": "<f4", "I64": "<i8", "F64": "<f8", "BOOL": "?", "F16": "<f2"}


def hand_read_safetensors(raw: bytes) -> tuple[dict, dict]:
    """The specification's layout read back, independently of onnxforge and the library."""
    (size,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + size])
    data = raw[8 + size:]
    meta = header.pop("__metadata__", {})
    return {name: np.frombuffer(data[e["data_offsets"][0]:e["data_offsets"][1]], CODES[e["dtype"]]).reshape(e["shape"])
            for name, e in header.items()}, meta


def test_safetensors_files_follow_the_specification(tmp_path):
    tensors = {"fc1.weight": np.arange(6, dtype=np.float32).reshape(2, 3), "step": np.array([7], np.int64),
               "mask": np.array([True, False]), "half": np.array([1.5], np.float16), "scalar": np.array(2.5)}
    path = write_safetensors(tensors, tmp_path / "w.safetensors")
    written, meta = hand_read_safetensors(path.read_bytes())
    assert meta == {} and sorted(written) == sorted(tensors)
    for name, value in tensors.items():
        assert written[name].dtype == value.dtype.newbyteorder("<") and written[name].shape == value.shape
        np.testing.assert_array_equal(written[name], value)
    (tmp_path / "h.safetensors").write_bytes(hand_made_safetensors(tensors))
    back, meta = read_safetensors(tmp_path / "h.safetensors")
    assert meta == {} and sorted(back) == sorted(tensors)
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
    with pytest.raises(DataError, match="'.*short.safetensors' is not a readable safetensors file"):
        read_safetensors(tmp_path / "short.safetensors")
    header = json.dumps({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 8]}}).encode()
    (tmp_path / "bad.safetensors").write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 8)
    with pytest.raises(DataError, match="'.*bad.safetensors' is not a readable safetensors file"):
        read_safetensors(tmp_path / "bad.safetensors")
    with pytest.raises(DataError, match="must end in .npz or .safetensors"):
        save_weights(mlp(2, [2], 2), tmp_path / "w.bin")


# ---- malformed headers, as an attacker writes them: one DataError line, never a traceback ----

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=20)
entries = st.fixed_dictionaries({}, optional={
    "dtype": st.sampled_from(["F32", "F64", "I64", "U8", "BOOL", "BF16", "F8_E4M3", "X", ""]) | json_values,
    "shape": st.lists(st.integers(-3, 2**62), max_size=5) | json_values,
    "data_offsets": st.lists(st.integers(-3, 2**64), max_size=3) | json_values,
})
headers = (st.dictionaries(st.text(max_size=8), entries | json_values, max_size=4) | json_values)


def nested(depth: int) -> bytes:
    return b'{"a":' * depth + b"1" + b"}" * depth


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(header=headers, data=st.binary(max_size=64), lie=st.sampled_from([None, 0, 7, 2**63, 2**64 - 1]))
@pytest.mark.fuzz
def test_malformed_safetensors_headers_give_one_data_error_line(tmp_path, header, data, lie):
    text = json.dumps(header).encode()
    size = len(text) if lie is None else lie
    path = tmp_path / "fuzz.safetensors"
    path.write_bytes(struct.pack("<Q", size) + text + data)
    try:
        tensors = load_weights(path)
    except DataError as exc:
        assert "\n" not in str(exc) and str(path) in str(exc)
    else:  # what the library accepts is a dict of arrays that fit the file
        assert all(isinstance(v, np.ndarray) and v.nbytes <= len(data) for v in tensors.values())


@pytest.mark.parametrize("raw", [
    nested(10_000), b"[" * 100_000, b'"a string"', b"[1, 2]", b"1e999",
    b'{"a": {"dtype": "F32", "shape": [1], "data_offsets": ["0", "4"]}}',  # string offsets
    b'{"a": {"dtype": "F32", "shape": [1099511627776], "data_offsets": [0, 4]}}',  # 2**40 elements
    b'{"a": {"dtype": "F32", "shape": [4294967296, 4294967296, 4294967296], "data_offsets": [0, 4]}}',  # overflows
    b'{"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 18446744073709551615]}}',
])
def test_deep_or_odd_headers_give_one_data_error_line(tmp_path, raw):
    path = tmp_path / "odd.safetensors"
    path.write_bytes(struct.pack("<Q", len(raw)) + raw)
    with pytest.raises(DataError) as caught:
        load_weights(path)
    assert "\n" not in str(caught.value) and "is not a readable safetensors file" in str(caught.value)
