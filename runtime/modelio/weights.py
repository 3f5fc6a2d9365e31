"""A model's parameters as files: ``.npz`` (numpy) and ``.safetensors``.

``.safetensors`` files are read and written with the format's own library (``safetensors``, its
numpy API); onnxforge adds only the atomic write and one typed error line for a file the library
refuses (a malformed header, offsets that do not fit, a dtype numpy lacks). String metadata go
under ``__metadata__``.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import safetensors
import safetensors.numpy
from onnx import ModelProto, numpy_helper

from onnxforge.runtime.errors import DataError, ModelError, first_line
from onnxforge.runtime.modelio.arrays import read_npz
from onnxforge.runtime.modelio.files import atomic_write_bytes
from onnxforge.runtime.modelio.protos import copy_model

__all__ = ["model_weights", "weights_bytes", "save_weights", "load_weights", "apply_weights", "write_safetensors",
           "read_safetensors", "WEIGHT_SUFFIXES"]

WEIGHT_SUFFIXES = (".npz", ".safetensors")


def write_safetensors(tensors: dict[str, np.ndarray], path, metadata: dict[str, str] | None = None) -> Path:
    """Write ``tensors`` (and string ``metadata``) to ``path`` atomically."""
    arrays = {name: np.asarray(value, order="C") for name, value in tensors.items()}  # 0-d stays 0-d
    meta = {str(k): str(v) for k, v in metadata.items()} if metadata else None
    try:
        data = safetensors.numpy.save(arrays, metadata=meta)
    except (ValueError, TypeError, safetensors.SafetensorError) as exc:
        raise DataError(f"cannot store these tensors in safetensors ({first_line(exc)})") from None
    atomic_write_bytes(path, data)
    return Path(path)


def read_safetensors(path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """``(tensors, metadata)`` of a ``.safetensors`` file; :class:`DataError` when it is not one."""
    try:
        with safetensors.safe_open(str(path), framework="np") as f:
            metadata = f.metadata() or {}
            return {name: f.get_tensor(name) for name in f.keys()}, dict(metadata)
    except FileNotFoundError:
        raise DataError(f"weights file '{path}' does not exist") from None
    except Exception as exc:  # noqa: BLE001 - the library raises SafetensorError, OSError, TypeError, ...
        raise DataError(f"'{path}' is not a readable safetensors file ({first_line(exc)})") from None


def model_weights(model: ModelProto) -> dict[str, np.ndarray]:
    """The float initialisers of rank >= 1 (the trainable candidates and BatchNorm statistics)."""
    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer
            if numpy_helper.to_array(t).dtype.kind == "f" and len(t.dims) > 0}


def weights_bytes(model: ModelProto) -> int:
    """The most bytes a weights file for ``model`` needs: every initialiser's elements at 8 bytes
    (a float64 file for float32 weights is accepted), read from the shapes without loading them."""
    return 8 * sum(math.prod(t.dims) for t in model.graph.initializer)


def save_weights(model: ModelProto, path) -> dict:
    """Write ``model``'s weights to ``path`` (.npz or .safetensors); returns ``{"tensors", "values"}``."""
    path = Path(path)
    weights = model_weights(model)
    if path.suffix == ".safetensors":
        write_safetensors(weights, path, {"format": "onnxforge", "producer": model.producer_name or ""})
    elif path.suffix == ".npz":
        buffer = io.BytesIO()
        np.savez(buffer, **weights)  # type: ignore[arg-type]  # numpy's stub reads ** as its allow_pickle flag
        atomic_write_bytes(path, buffer.getvalue())
    else:
        raise DataError(f"weights file '{path}' must end in .npz or .safetensors")
    return {"tensors": len(weights), "values": int(sum(v.size for v in weights.values()))}


def load_weights(path, *, max_bytes: int | None = None) -> dict[str, np.ndarray]:
    """The tensors of a ``.npz`` (through the checked reader: headers against sizes, no pickles,
    one name once, at most ``max_bytes`` of data) or ``.safetensors`` weights file."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"weights file '{path}' " + ("is not a regular file" if path.exists() else "does not exist"))
    if path.suffix == ".safetensors":
        return read_safetensors(path)[0]
    if path.suffix == ".npz":
        return read_npz(path, max_bytes=max_bytes)
    raise DataError(f"weights file '{path}' must end in .npz or .safetensors")


def apply_weights(model: ModelProto, weights: dict[str, np.ndarray], *, strict: bool = True) -> tuple[ModelProto, list]:
    """A copy of ``model`` with initialisers replaced by ``weights`` (same names, shapes, dtypes
    kind). ``strict``: every weight must match an initialiser and every model weight be given.
    Returns the model and the names replaced."""
    out = copy_model(model)
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
