"""A model's parameters as files: ``.npz`` (numpy) and ``.safetensors``.

The safetensors format is written and read here directly (it is small and documented): an
8-byte little-endian header length, a JSON header mapping each tensor name to its ``dtype``,
``shape`` and ``data_offsets`` (begin, end, relative to the byte buffer after the header, which is
padded with spaces to a multiple of 8), then the tensors' bytes, little-endian, C order. String
metadata go under ``__metadata__``.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
from onnx import ModelProto, numpy_helper

from onnxforge.runtime.errors import DataError, ModelError
from onnxforge.runtime.modelio.files import atomic_write_bytes

__all__ = ["model_weights", "save_weights", "load_weights", "apply_weights", "write_safetensors",
           "read_safetensors", "WEIGHT_SUFFIXES"]

WEIGHT_SUFFIXES = (".npz", ".safetensors")
_ST_DTYPES = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4", "I16": "<i2", "I8": "i1",
              "U64": "<u8", "U32": "<u4", "U16": "<u2", "U8": "u1", "BOOL": "?"}
_NP_TO_ST = {np.dtype(v).str if np.dtype(v).itemsize > 1 else np.dtype(v).char: k for k, v in _ST_DTYPES.items()}


def _st_name(dtype: np.dtype) -> str:
    dtype = np.dtype(dtype).newbyteorder("<") if np.dtype(dtype).itemsize > 1 else np.dtype(dtype)
    key = dtype.str if dtype.itemsize > 1 else dtype.char
    if key not in _NP_TO_ST:
        raise DataError(f"dtype {dtype} cannot be stored in safetensors by onnxforge")
    return _NP_TO_ST[key]


def write_safetensors(tensors: dict[str, np.ndarray], path, metadata: dict[str, str] | None = None) -> Path:
    header: dict = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    chunks, offset = [], 0
    for name, value in tensors.items():
        value = np.asarray(value)
        kind = _st_name(value.dtype)
        data = np.ascontiguousarray(value.astype(np.dtype(_ST_DTYPES[kind]), copy=False)).tobytes()
        header[name] = {"dtype": kind, "shape": list(value.shape), "data_offsets": [offset, offset + len(data)]}
        chunks.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    atomic_write_bytes(path, struct.pack("<Q", len(text)) + text + b"".join(chunks))
    return Path(path)


def read_safetensors(path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    raw = Path(path).read_bytes()
    if len(raw) < 8:
        raise DataError(f"'{path}' is not a safetensors file (shorter than its 8-byte header length)")
    (size,) = struct.unpack("<Q", raw[:8])
    if size > len(raw) - 8:
        raise DataError(f"'{path}' is not a safetensors file (header length {size} exceeds the file)")
    try:
        header = json.loads(raw[8 : 8 + size])
    except ValueError:
        raise DataError(f"'{path}' is not a safetensors file (its header is not JSON)") from None
    buffer = memoryview(raw)[8 + size :]
    metadata = header.pop("__metadata__", {}) or {}
    out = {}
    for name, info in header.items():
        try:
            dtype = np.dtype(_ST_DTYPES[info["dtype"]])
            begin, end = info["data_offsets"]
            shape = tuple(info["shape"])
        except (KeyError, TypeError, ValueError):
            raise DataError(f"'{path}': tensor '{name}' has a malformed entry {info!r}") from None
        if not 0 <= begin <= end <= len(buffer) or (end - begin) != dtype.itemsize * int(np.prod(shape, dtype=np.int64)):
            raise DataError(f"'{path}': tensor '{name}' has data offsets {info['data_offsets']} that do not fit its "
                            f"shape {list(shape)} and dtype {info['dtype']}")
        out[name] = np.frombuffer(buffer[begin:end], dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="))
    return out, metadata


def model_weights(model: ModelProto) -> dict[str, np.ndarray]:
    """The float initialisers of rank >= 1 (the trainable candidates and BatchNorm statistics)."""
    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer
            if numpy_helper.to_array(t).dtype.kind == "f" and len(t.dims) > 0}


def save_weights(model: ModelProto, path) -> dict:
    """Write ``model``'s weights to ``path`` (.npz or .safetensors); returns ``{"tensors", "values"}``."""
    path = Path(path)
    weights = model_weights(model)
    if path.suffix == ".safetensors":
        write_safetensors(weights, path, {"format": "onnxforge", "producer": model.producer_name or ""})
    elif path.suffix == ".npz":
        import io

        buffer = io.BytesIO()
        np.savez(buffer, **weights)
        atomic_write_bytes(path, buffer.getvalue())
    else:
        raise DataError(f"weights file '{path}' must end in .npz or .safetensors")
    return {"tensors": len(weights), "values": int(sum(v.size for v in weights.values()))}


def load_weights(path) -> dict[str, np.ndarray]:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"weights file '{path}' does not exist")
    if path.suffix == ".safetensors":
        return read_safetensors(path)[0]
    if path.suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as data:
                return {k: data[k] for k in data.files}
        except (ValueError, OSError) as exc:
            raise DataError(f"'{path}' is not a readable .npz file ({exc})") from None
    raise DataError(f"weights file '{path}' must end in .npz or .safetensors")


def apply_weights(model: ModelProto, weights: dict[str, np.ndarray], *, strict: bool = True) -> tuple[ModelProto, list]:
    """A copy of ``model`` with initialisers replaced by ``weights`` (same names, shapes, dtypes
    kind). ``strict``: every weight must match an initialiser and every model weight be given.
    Returns the model and the names replaced."""
    out = ModelProto()
    out.CopyFrom(model)
    by_name = {t.name: i for i, t in enumerate(out.graph.initializer)}
    unknown = [k for k in weights if k not in by_name]
    if unknown:
        raise ModelError(f"the weights file has tensors the model lacks: {', '.join(unknown[:8])}"
                         f"{' ...' if len(unknown) > 8 else ''}")
    if strict:
        absent = [k for k in model_weights(model) if k not in weights]
        if absent:
            raise ModelError(f"the weights file lacks the model's tensors {', '.join(absent[:8])}"
                             f"{' ...' if len(absent) > 8 else ''} (pass strict=False / --partial to keep them)")
    replaced = []
    for name, value in weights.items():
        old = out.graph.initializer[by_name[name]]
        current = numpy_helper.to_array(old)
        value = np.asarray(value)
        if tuple(value.shape) != tuple(current.shape):
            raise ModelError(f"weight '{name}': the model has shape {list(current.shape)}, the file {list(value.shape)}")
        if value.dtype.kind != current.dtype.kind:
            raise ModelError(f"weight '{name}': the model holds {current.dtype}, the file {value.dtype}")
        old.CopyFrom(numpy_helper.from_array(value.astype(current.dtype), name))
        replaced.append(name)
    return out, replaced
