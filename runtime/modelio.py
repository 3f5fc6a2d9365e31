"""Reading and writing models safely: typed errors for bad files, no external data outside the
model's folder, IR/opset brought to what the installed ONNX Runtime accepts, atomic saves, and
onnxforge's metadata in ``metadata_props``."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import onnx
from onnx import ModelProto

from onnxforge.runtime.errors import ModelError, UnsafeModelError

__all__ = [
    "load_model",
    "save_model",
    "atomic_write_bytes",
    "make_runtime_compatible",
    "get_metadata",
    "set_metadata",
    "METADATA_PREFIX",
]

METADATA_PREFIX = "onnxforge."


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _check_external_data(model: ModelProto, base_dir: Path) -> None:
    base = base_dir.resolve()
    tensors = list(model.graph.initializer)
    for node in model.graph.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                tensors.append(attr.t)
    for tensor in tensors:
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        location = next((e.value for e in tensor.external_data if e.key == "location"), "")
        target = (base / location).resolve()
        if os.path.isabs(location) or (base != target and base not in target.parents):
            raise UnsafeModelError(
                f"initializer '{tensor.name}' keeps its data at '{location}', outside the model's folder "
                f"'{base}'; onnxforge does not read files a model points to outside its own folder"
            )
        if not target.is_file():
            raise ModelError(f"initializer '{tensor.name}' keeps its data in '{location}', which does not exist")


def load_model(source: str | os.PathLike | ModelProto | bytes) -> ModelProto:
    """Load a model from a path, bytes or a ``ModelProto``; raise :class:`ModelError` plainly."""
    if isinstance(source, ModelProto):
        return source
    if isinstance(source, (bytes, bytearray)):
        try:
            return onnx.load_model_from_string(bytes(source))
        except Exception as exc:  # noqa: BLE001
            raise ModelError(f"the bytes given are not an ONNX model ({exc})") from None
    path = Path(source)
    if path.is_dir():
        candidate = path / "model.onnx"
        if not candidate.is_file():
            raise ModelError(f"folder '{path}' holds no model.onnx")
        path = candidate
    if not path.is_file():
        raise ModelError(f"model file '{path}' does not exist")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - protobuf raises several kinds
        raise ModelError(f"'{path}' is not a readable ONNX model ({type(exc).__name__}: {exc})") from None
    if not model.graph.node and not model.graph.output:
        raise ModelError(f"'{path}' is not a readable ONNX model (it has no graph)")
    _check_external_data(model, path.parent)
    try:
        onnx.load_external_data_for_model(model, str(path.parent))
    except Exception as exc:  # noqa: BLE001
        raise ModelError(f"external data of '{path}' could not be read: {exc}") from None
    return model


def save_model(model: ModelProto, path: str | os.PathLike) -> Path:
    """Save ``model`` atomically (models over 2 GB are not supported by this writer)."""
    path = Path(path)
    atomic_write_bytes(path, model.SerializeToString())
    return path


def default_opset(model: ModelProto) -> int:
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx"):
            return imp.version
    return 0


def make_runtime_compatible(model: ModelProto, max_ir: int | None = None, max_opset: int | None = None) -> ModelProto:
    """Return ``model`` (a copy when changed) with IR and default opset the runtime accepts."""
    if max_ir is None or max_opset is None:
        from onnxforge.runtime._ort import runtime_info

        info = runtime_info()
        max_ir = info.max_ir_version if max_ir is None else max_ir
        max_opset = info.max_opset if max_opset is None else max_opset
    opset = default_opset(model)
    if opset > max_opset:
        from onnx import version_converter

        try:
            model = version_converter.convert_version(model, max_opset)
        except Exception as exc:  # noqa: BLE001
            raise ModelError(
                f"the model uses opset {opset}, the installed ONNX Runtime accepts at most {max_opset}, "
                f"and converting it down failed: {str(exc).splitlines()[0]}"
            ) from None
    if model.ir_version > max_ir:
        copy = ModelProto()
        copy.CopyFrom(model)
        copy.ir_version = max_ir
        model = copy
    return model


def get_metadata(model: ModelProto) -> dict:
    """onnxforge's metadata (keys without the ``onnxforge.`` prefix, values JSON-decoded)."""
    out = {}
    for prop in model.metadata_props:
        if prop.key.startswith(METADATA_PREFIX):
            key = prop.key[len(METADATA_PREFIX):]
            try:
                out[key] = json.loads(prop.value)
            except ValueError:
                out[key] = prop.value
    return out


def set_metadata(model: ModelProto, values: dict) -> ModelProto:
    """Set onnxforge metadata in place (JSON-encoded under ``onnxforge.KEY``)."""
    existing = {p.key: p for p in model.metadata_props}
    for key, value in values.items():
        full = METADATA_PREFIX + key
        text = json.dumps(value, sort_keys=True)
        if full in existing:
            existing[full].value = text
        else:
            prop = model.metadata_props.add()
            prop.key, prop.value = full, text
    return model
