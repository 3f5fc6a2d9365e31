"""``.onnx_adapter`` files: ONNX Runtime's LoRA adapter format, written and read.

The format is a FlatBuffers file (identifier ``TORT``, format version 1): an adapter version, a model
version and named tensors (dims, element type, raw little-endian bytes). ONNX Runtime 1.20+ reads
it with ``onnxruntime.LoraAdapter`` and runs a model with one active per ``RunOptions``.

Writing: with ``onnxruntime.AdapterFormat`` where the installed ONNX Runtime has it (1.20+), else
from the format's published schema (``adapter_format/adapter_schema.fbs``) with the ``flatbuffers``
library; both give files ONNX Runtime's reader takes (tests read ours back with it). Reading is
always ours (ONNX Runtime's reader hands out ``OrtValue``\\ s; serving and merging want numpy), with
every declared size checked against the bytes the file holds.
"""

from __future__ import annotations

import os
import struct
import tempfile
from dataclasses import dataclass, field
from typing import NoReturn
from pathlib import Path

import flatbuffers
import numpy as np

from onnxforge.runtime.adapters.adapter_format import adapter_schema_generated as fb
from onnxforge.runtime.errors import ModelError
from onnxforge.runtime.modelio.files import atomic_write_bytes
from onnxforge.runtime.ort.distribution import ort

__all__ = ["AdapterFile", "write_adapter", "read_adapter", "FORMAT_VERSION", "SUFFIX", "ort_writer"]

FORMAT_VERSION = 1
SUFFIX = ".onnx_adapter"
IDENTIFIER = b"TORT"
MAX_ADAPTER_BYTES = 4 << 30
_TYPES = {fb.TensorDataType.FLOAT: np.float32, fb.TensorDataType.DOUBLE: np.float64,
          fb.TensorDataType.FLOAT16: np.float16, fb.TensorDataType.INT32: np.int32,
          fb.TensorDataType.INT64: np.int64, fb.TensorDataType.UINT8: np.uint8, fb.TensorDataType.INT8: np.int8}
_CODES = {np.dtype(v): k for k, v in _TYPES.items()}


@dataclass
class AdapterFile:
    parameters: dict = field(default_factory=dict)  # name -> numpy array
    adapter_version: int = 1
    model_version: int = 1
    format_version: int = FORMAT_VERSION


def ort_writer():
    """``onnxruntime.AdapterFormat`` where the installed ONNX Runtime has it, else ``None``."""
    try:
        return getattr(ort(), "AdapterFormat", None)
    except Exception:  # noqa: BLE001 - no runtime at all: the flatbuffers writer needs none
        return None


def _checked(parameters: dict) -> dict:
    out = {}
    for name, value in parameters.items():
        array = np.ascontiguousarray(value)
        if array.dtype.newbyteorder("<") != array.dtype and array.dtype.byteorder not in ("=", "|", "<"):
            array = array.astype(array.dtype.newbyteorder("<"))
        if np.dtype(array.dtype) not in _CODES:
            raise ModelError(f"adapter tensor '{name}' is {array.dtype}; an .onnx_adapter holds "
                             f"{', '.join(sorted(str(np.dtype(t)) for t in _TYPES.values()))}")
        out[name] = array
    return out


def _flatbuffer(parameters: dict, adapter_version: int, model_version: int) -> bytes:
    size = sum(a.nbytes for a in parameters.values())
    b = flatbuffers.Builder(size + 1024 * (len(parameters) + 1))
    offsets = []
    for name, array in parameters.items():
        name_off = b.CreateString(name)
        fb.ParameterStartDimsVector(b, array.ndim)
        for d in reversed(array.shape):
            b.PrependInt64(int(d))
        dims_off = b.EndVector()
        raw = array.tobytes()
        fb.ParameterStartRawDataVector(b, len(raw))  # aligned to 8 (the schema's force_align)
        b.head = b.head - len(raw)
        b.Bytes[b.head : b.head + len(raw)] = raw
        raw_off = b.EndVector()
        fb.ParameterStart(b)
        fb.ParameterAddName(b, name_off)
        fb.ParameterAddDims(b, dims_off)
        fb.ParameterAddDataType(b, _CODES[np.dtype(array.dtype)])
        fb.ParameterAddRawData(b, raw_off)
        offsets.append(fb.ParameterEnd(b))
    fb.AdapterStartParametersVector(b, len(offsets))
    for off in reversed(offsets):
        b.PrependUOffsetTRelative(off)
    params_off = b.EndVector()
    fb.AdapterStart(b)
    fb.AdapterAddFormatVersion(b, FORMAT_VERSION)
    fb.AdapterAddAdapterVersion(b, adapter_version)
    fb.AdapterAddModelVersion(b, model_version)
    fb.AdapterAddParameters(b, params_off)
    b.Finish(fb.AdapterEnd(b), file_identifier=IDENTIFIER)
    return bytes(b.Output())


def _with_ort(writer, parameters: dict, adapter_version: int, model_version: int, folder: Path) -> bytes:
    rt = ort()
    # OrtValue.ortvalue_from_numpy borrows the array's memory: `parameters` (contiguous arrays this
    # function's caller holds) outlive every OrtValue made here
    values = {name: rt.OrtValue.ortvalue_from_numpy(array) for name, array in parameters.items()}
    fmt = writer()
    fmt.set_adapter_version(adapter_version)
    fmt.set_model_version(model_version)
    fmt.set_parameters(values)
    fd, tmp = tempfile.mkstemp(suffix=SUFFIX, dir=folder)
    os.close(fd)
    try:
        fmt.export_adapter(tmp)
        return Path(tmp).read_bytes()
    finally:
        os.unlink(tmp)


def write_adapter(path, parameters: dict, *, adapter_version: int = 1, model_version: int = 1,
                  use_ort: bool | None = None) -> Path:
    """Write ``parameters`` (name -> array) to ``path`` atomically; ``use_ort``: None takes ONNX
    Runtime's writer where there is one, False the flatbuffers writer, True requires ONNX Runtime's."""
    path = Path(path)
    arrays = _checked(parameters)
    writer = ort_writer() if use_ort is not False else None
    if use_ort and writer is None:
        raise ModelError("the installed ONNX Runtime has no AdapterFormat (it came in 1.20)")
    if writer is not None:
        data = _with_ort(writer, arrays, adapter_version, model_version, path.parent)
    else:
        data = _flatbuffer(arrays, adapter_version, model_version)
    atomic_write_bytes(path, data)
    return path


def _fail(path, why: str) -> NoReturn:
    raise ModelError(f"adapter file '{path}' {why}")


def read_adapter(path) -> AdapterFile:
    """The adapter in ``path`` (arrays are copies: the file may change after this returns)."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_ADAPTER_BYTES:
            _fail(path, f"is {size} bytes, more than the {MAX_ADAPTER_BYTES} an adapter may have")
        data = path.read_bytes()
    except OSError as exc:
        _fail(path, f"could not be read: {exc.strerror or exc}")
    if len(data) < 8 or data[4:8] != IDENTIFIER:
        _fail(path, "is not an .onnx_adapter file (no 'TORT' identifier)")
    try:
        root = fb.Adapter.GetRootAs(data, 0)
        version = root.FormatVersion()
        if version != FORMAT_VERSION:
            _fail(path, f"has format version {version}; this reader knows version {FORMAT_VERSION}")
        params = {}
        for j in range(root.ParametersLength()):
            p = root.Parameters(j)
            name = (p.Name() or b"").decode("utf-8")
            code = p.DataType()
            if code not in _TYPES:
                _fail(path, f"holds tensor '{name}' of element type {code}, which it cannot read")
            dims = [int(d) for d in (p.DimsAsNumpy() if not p.DimsIsNone() else [])]
            dtype = np.dtype(_TYPES[code]).newbyteorder("<")
            raw = p.RawDataAsNumpy() if not p.RawDataIsNone() else np.zeros(0, np.uint8)
            want = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
            if any(d < 0 for d in dims) or raw.size != want:
                _fail(path, f"declares tensor '{name}' of shape {dims} ({want} bytes) but holds {raw.size} bytes")
            if name in params:
                _fail(path, f"holds tensor '{name}' twice")
            params[name] = raw.view(dtype).reshape(dims).astype(dtype.newbyteorder("="), copy=True)
        return AdapterFile(params, root.AdapterVersion(), root.ModelVersion(), version)
    except (IndexError, ValueError, UnicodeDecodeError, TypeError, struct.error) as exc:
        _fail(path, f"is damaged: {exc}")
