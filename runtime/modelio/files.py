"""Reading and writing models safely: typed errors for bad files, no external data outside the
model's folder, IR/opset brought to what the installed ONNX Runtime accepts, atomic saves, and
onnxforge's metadata read and written through the model card (:mod:`.card`)."""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

import onnx
from onnx import ModelProto

from onnxforge.runtime.modelio.external_data import (
    MAX_EXTERNAL_BYTES,
    all_tensors,
    check_location,
    expected_bytes,
    external_tensors,
    externalize,
    load_external_data,
)
from onnxforge.runtime.errors import ModelError, UnsafeModelError
from onnxforge.runtime.modelio.limits import LoadLimits, check_limits
from onnxforge.runtime.modelio import protos
from onnxforge.runtime.modelio.card import METADATA_PREFIX, get_metadata, set_metadata  # re-exported: the card's home

__all__ = [
    "load_model",
    "save_model",
    "atomic_write_bytes",
    "file_mode",
    "get_metadata",
    "set_metadata",
    "METADATA_PREFIX",
]

MAX_MODEL_BYTES = 2**31 - 1  # protobuf's limit for one message


def fsync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable (a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def file_mode() -> int:
    """The mode a new file gets from ``open()`` under the process's umask (0644 under 022), read
    from /proc where it can be (``os.umask`` must set it to read it, which races other threads)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never half:
    a temporary file in the same folder, flushed and synced, renamed over ``path``, folder synced.
    The file gets the mode any tool's new file gets under the umask (``mkstemp``'s 0600 is only
    for the temporary name)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, file_mode())
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    fsync_folder(path.parent)


def _parse(data: bytes, what: str, limits: LoadLimits | None) -> ModelProto:
    model = ModelProto()
    try:
        model.ParseFromString(data)
    except Exception as exc:  # noqa: BLE001 - protobuf raises several kinds
        raise ModelError(f"{what} is not a readable ONNX model (corrupt or truncated: {type(exc).__name__}: {exc})") from None
    if not model.HasField("graph") or (not model.graph.node and not model.graph.output):
        raise ModelError(f"{what} is not a readable ONNX model (it has no graph; corrupt, truncated or another format)")
    check_limits(model, what, limits)  # first: the text check below walks every node
    _check_text(model, what)  # before any field is used: external data locations included
    return model


def _validate(model: ModelProto, what: str) -> None:
    """Cheap structural checks that catch a file cut at a field boundary (which still parses) or
    tensors whose bytes do not fit their shape; ONNX Runtime checks the graph itself when a session
    is made (onnx's full checker is stricter than ONNX Runtime and would refuse models it runs)."""
    if model.ir_version <= 0:
        raise ModelError(f"{what} is not a valid ONNX model: it has no IR version (corrupt or truncated?)")
    if not model.opset_import:
        raise ModelError(f"{what} is not a valid ONNX model: it imports no opset (corrupt or truncated?)")
    for where, tensor in all_tensors(model):
        if tensor.HasField("raw_data") and tensor.data_location != onnx.TensorProto.EXTERNAL:
            if tensor.data_type == onnx.TensorProto.STRING:
                raise ModelError(f"{what}: {where} is a string tensor with raw bytes, which ONNX does not allow")
            need = expected_bytes(f"{what}: {where}", tensor)
            if len(tensor.raw_data) != need:
                raise ModelError(f"{what}: {where} holds {len(tensor.raw_data)} bytes, but its type and shape "
                                 f"{list(tensor.dims)} need {need} (corrupt file?)")


def _repeated(field) -> bool:
    flag = getattr(field, "is_repeated", None)  # protobuf >= 6; older ones have ``label``
    return flag if flag is not None else field.label == field.LABEL_REPEATED


def _check_text(message, what: str) -> None:
    """Every string field must be UTF-8: protobuf hands invalid text to Python as bytes, which
    would fail later in unrelated places (metadata lookups, ONNX Runtime's Python layer)."""
    from google.protobuf.descriptor import FieldDescriptor

    stack = [message]
    while stack:
        msg = stack.pop()
        for field, value in msg.ListFields():
            if field.type == FieldDescriptor.TYPE_MESSAGE:
                stack.extend(value if _repeated(field) else [value])
            elif field.type == FieldDescriptor.TYPE_STRING:
                values = value if _repeated(field) else [value]
                if any(isinstance(v, bytes) for v in values):
                    raise ModelError(f"{what} is not a valid ONNX model: its {type(msg).__name__}.{field.name} "
                                     "holds text that is not UTF-8 (corrupt file?)")


def load_model(source: str | os.PathLike | ModelProto | bytes, *, max_bytes: int = MAX_MODEL_BYTES,
               max_external_bytes: int = MAX_EXTERNAL_BYTES, check: bool = True,
               limits: LoadLimits | None = None) -> ModelProto:
    """Load a model from a path (a file, or a folder holding ``model.onnx``), bytes or a
    ``ModelProto`` (checked and returned as a copy).

    The file is read only when it is a regular file of at most ``max_bytes``; it is parsed without
    its external data; every external-data declaration is checked (see
    :mod:`onnxforge.runtime.modelio.external_data`) before any of it is read, after the model's
    structure is checked against ``limits`` (recursion, node counts, nesting, declared tensor sizes:
    :mod:`onnxforge.runtime.modelio.limits`; default :meth:`LoadLimits.from_env`). Raises
    :class:`ModelError` (or :class:`UnsafeModelError` for escapes) naming the file.
    """
    if isinstance(source, ModelProto):  # a copy: the caller's model is never edited (nor aliased)
        check_limits(source, "the model given", limits)
        model = ModelProto()
        model.CopyFrom(source)
        return load_external_data(model, None, max_bytes=max_external_bytes, source="the model given")
    if isinstance(source, (bytes, bytearray, memoryview)):
        what = "the bytes given"
        if len(source) > max_bytes:
            raise ModelError(f"{what} are {len(source)} bytes, over the model size limit of {max_bytes}")
        model = _parse(bytes(source), what, limits)
        load_external_data(model, None, max_bytes=max_external_bytes, source=what)
    else:
        path = Path(source)
        if path.is_dir():
            candidate = path / "model.onnx"
            if not candidate.is_file():
                raise ModelError(f"folder '{path}' holds no model.onnx")
            path = candidate
        what = f"'{path}'"
        try:
            info = path.stat()
        except FileNotFoundError:
            raise ModelError(f"model file '{path}' does not exist") from None
        except OSError as exc:
            raise ModelError(f"model file '{path}' cannot be read ({exc.strerror})") from None
        if not stat.S_ISREG(info.st_mode):
            raise ModelError(f"model file '{path}' is not a regular file")
        if info.st_size > max_bytes:
            raise ModelError(f"model file '{path}' is {info.st_size} bytes, over the model size limit of {max_bytes}")
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ModelError(f"model file '{path}' cannot be read ({exc.strerror})") from None
        model = _parse(data, what, limits)
        load_external_data(model, path.parent, max_bytes=max_external_bytes, source=what)
    if check:
        _validate(model, what)
    return model


def save_model(model: ModelProto, path: str | os.PathLike, *, external_data: str | bool = False,
               size_threshold: int = 1024) -> Path:
    """Save ``model`` atomically.

    With ``external_data`` (True for ``NAME.onnx.data``, or a file name), tensors of at least
    ``size_threshold`` bytes go to that file next to the model; the location must stay inside the
    model's folder (no absolute path, ``..`` or link), and the data file is written atomically
    before the model that points to it. A model that still points to external data it has not
    loaded is refused."""
    path = Path(path)
    pending = external_tensors(model)
    if pending:
        raise UnsafeModelError(f"{pending[0].where}: still points to external data '{pending[0].location}'; "
                               "load the model with its data (load_model) before saving it")
    if not external_data:
        atomic_write_bytes(path, model.SerializeToString())
        return path
    location = f"{path.name}.data" if external_data is True else str(external_data)
    path.parent.mkdir(parents=True, exist_ok=True)
    # the same escapes load_model refuses, refused before anything is written
    target = check_location(location, path.parent, f"external data of '{path}'", must_exist=False)
    target.parent.mkdir(parents=True, exist_ok=True)
    stored, data = externalize(model, location, size_threshold)
    atomic_write_bytes(target, data)
    atomic_write_bytes(path, stored.SerializeToString())
    return path


def default_opset(model: ModelProto) -> int:
    """The model's standard opset, 0 where it imports none."""
    return protos.default_opset(model, 0)
