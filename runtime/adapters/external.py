"""Models whose weights live in ONNX external data, trained with LoRA without loading them.

:func:`open_external` parses the model without its data (``load_external_data=False``), checks every
declaration as :func:`~onnxforge.runtime.modelio.files.load_model` does (inside the model's folder,
no link or ``..``, the file long enough) and maps each external tensor read-only with
``numpy.memmap``: no weight is ever copied into a protobuf message or a Python array. A LoRA step
model takes these weights as graph inputs bound to ONNX Runtime ``OrtValue``\\ s that borrow the
mapped pages (see :meth:`ExternalWeights.as_inputs`); ONNX Runtime reads them from the page cache.

:func:`write_with_data` writes a model whose large tensors come from arrays (mapped or not) into
``NAME.onnx`` + ``NAME.onnx.data``, streaming one tensor at a time, each data file written and
synced before the model that points to it. The merged weights ``W + A @ B`` are computed in row
blocks of about 64 MB, so writing the merged model never holds more than one block beside the map.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import ModelProto, TensorProto, helper

from onnxforge.runtime.errors import ModelError
from onnxforge.runtime.modelio.external_data import check_location, expected_bytes, external_tensors
from onnxforge.runtime.modelio.files import atomic_write_bytes, file_mode
from onnxforge.runtime.modelio.limits import check_limits

__all__ = ["ExternalWeights", "open_external", "open_for_training", "has_external_data", "write_with_data",
           "BLOCK_BYTES"]

BLOCK_BYTES = 64 << 20
ALIGN = 4096  # tensors start on page boundaries in the data files written here (memory-mappable)


@dataclass
class ExternalWeights:
    """The external initialisers of a model, mapped read-only: ``{name: numpy.memmap}``."""

    folder: Path
    arrays: dict = field(default_factory=dict)

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in self.arrays.values())

    def identity(self, model: ModelProto) -> ModelProto:
        """A small stand-in of ``model`` for fingerprints: where its tensors' bytes are stored left
        out (a run folder's copy keeps them elsewhere), a digest of the bytes in their place (of the
        first and last MiB and the length, for tensors over 16 MiB)."""
        out = ModelProto()
        out.CopyFrom(model)
        for t in out.graph.initializer:
            array = self.arrays.get(t.name)
            if array is None:
                continue
            flat = array.reshape(-1).view(np.uint8) if array.size else np.zeros(0, np.uint8)
            digest = hashlib.sha256(str(flat.size).encode())
            if flat.size <= 16 << 20:
                digest.update(flat.tobytes())
            else:
                digest.update(flat[: 1 << 20].tobytes())
                digest.update(flat[-(1 << 20):].tobytes())
            del t.external_data[:]
            t.data_location = TensorProto.DEFAULT
            t.raw_data = digest.digest()
        return out

    def as_inputs(self, model: ModelProto) -> ModelProto:
        """``model`` (not copied: the caller's) with these initialisers turned into graph inputs."""
        keep = [t for t in model.graph.initializer if t.name not in self.arrays]
        declared = {i.name for i in model.graph.input}
        moved = [t for t in model.graph.initializer if t.name in self.arrays]
        del model.graph.initializer[:]
        model.graph.initializer.extend(keep)
        model.graph.input.extend(helper.make_tensor_value_info(t.name, t.data_type, list(t.dims))
                                 for t in moved if t.name not in declared)
        return model


def has_external_data(path) -> bool:
    """Whether the model file at ``path`` keeps tensors in external data (read without the data)."""
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception:  # noqa: BLE001 - not a model file we can read this way: load_model says why
        return False
    return any(t.data_location == TensorProto.EXTERNAL for t in model.graph.initializer)


def open_external(path) -> tuple[ModelProto, ExternalWeights]:
    """The model at ``path`` without its data, and its external initialisers mapped."""
    path = Path(path)
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - onnx raises several kinds for a damaged file
        raise ModelError(f"model file '{path}' cannot be parsed: {str(exc).splitlines()[0][:200]}") from None
    check_limits(model, f"'{path}'")
    weights = ExternalWeights(path.parent)
    for ref in external_tensors(model):
        if not ref.where.startswith("initializer '"):  # the main graph's initialisers only
            raise ModelError(f"{ref.where}: only initialisers may keep their data outside the model here")
        file = check_location(ref.location, path.parent, ref.where)
        size = expected_bytes(ref.where, ref.tensor)
        if ref.length is not None and ref.length != size:
            raise ModelError(f"{ref.where}: external data length {ref.length} differs from the {size} bytes its "
                             f"shape {list(ref.tensor.dims)} needs")
        if file.stat().st_size < ref.offset + size:
            raise ModelError(f"{ref.where}: external data file '{ref.location}' ends before offset {ref.offset} + "
                             f"{size} bytes")
        dtype = helper.tensor_dtype_to_np_dtype(ref.tensor.data_type)
        shape = tuple(int(d) for d in ref.tensor.dims)
        weights.arrays[ref.tensor.name] = (np.memmap(file, dtype=dtype, mode="r", offset=ref.offset, shape=shape)
                                           if size else np.zeros(shape, dtype))
    return model, weights


def open_for_training(model, keep_external: bool):
    """``(model, None)`` as :func:`load_model` loads it, or, with ``keep_external`` and a model file
    whose initialisers keep their data outside it, ``(model without data, ExternalWeights)``."""
    from onnxforge.runtime.modelio.files import load_model

    if keep_external and isinstance(model, (str, os.PathLike)) and Path(model).is_file() and has_external_data(model):
        return open_external(model)
    return load_model(model), None


def _blocks(array, rows: int):
    for start in range(0, max(len(array), 1), rows):
        yield start, min(start + rows, len(array))


def write_with_data(model: ModelProto, path, arrays: dict, transforms: dict | None = None) -> Path:
    """Write ``model`` to ``path`` with the tensors in ``arrays`` (name -> array, its initialisers
    of that name without data) in ``path.name + '.data'``. ``transforms[name](block, start, stop)``
    gives the bytes of rows ``start:stop`` to write instead of the array's own (the merged weight)."""
    path = Path(path)
    location = path.name + ".data"
    target = check_location(location, path.parent, f"external data of '{path}'", must_exist=False)
    transforms = transforms or {}
    out = ModelProto()
    out.CopyFrom(model)
    by_name = {t.name: t for t in out.graph.initializer}
    fd, tmp = tempfile.mkstemp(prefix=f".{location}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            offset = 0
            for name, array in arrays.items():
                tensor = by_name[name]
                pad = (-offset) % ALIGN
                f.write(b"\0" * pad)
                offset += pad
                rows = max(1, BLOCK_BYTES // max(1, array[:1].nbytes)) if array.ndim else 1
                length = 0
                for start, stop in (_blocks(array, rows) if array.ndim else [(0, 1)]):
                    block = array[start:stop] if array.ndim else array
                    fn = transforms.get(name)
                    data = np.ascontiguousarray(fn(block, start, stop) if fn is not None else block, array.dtype)
                    f.write(data.tobytes() if data.ndim == 0 else data.data.cast("B"))
                    length += data.nbytes
                tensor.ClearField("raw_data")
                del tensor.external_data[:]
                tensor.data_location = TensorProto.EXTERNAL
                for key, value in (("location", location), ("offset", str(offset)), ("length", str(length))):
                    entry = tensor.external_data.add()
                    entry.key, entry.value = key, value
                offset += length
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, file_mode())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    atomic_write_bytes(path, out.SerializeToString())  # after its data: a reader never sees a model without it
    return path
