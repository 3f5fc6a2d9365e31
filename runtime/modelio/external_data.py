"""External data, read without trusting the model file that declares it.

ONNX lets a tensor keep its bytes in another file (``data_location = EXTERNAL`` with
``external_data`` entries ``location``, ``offset``, ``length``, ``checksum``). A model written by a
stranger can point those at ``/etc/shadow``, at ``../../secret``, at a symbolic or hard link to
something else, at a FIFO that blocks forever, or claim offsets and lengths that do not fit.
ONNX Runtime 1.19 checks only part of this, so onnxforge reads external data itself:

* every tensor is visited: initialisers, sparse initialisers (values and indices), tensors in node
  attributes (``t``, ``tensors``, ``sparse_tensor(s)``), in subgraphs (``g``, ``graphs``), in model
  functions (their nodes and the default values of their attributes, ``attribute_proto``) and in
  training-info graphs;
* a location must be a relative path inside the model's folder: no absolute path, no drive, no
  ``..`` segment, no symbolic link on the way, a regular file with one hard link only, and its
  real path inside the folder;
* only the keys the spec defines, each once; ``offset`` and ``length`` whole non-negative numbers
  inside the file; ``length`` equal to what the tensor's type and shape need;
* the external bytes of the whole model stay under a cap.

Anything else raises :class:`UnsafeModelError` (an escape) or :class:`ModelError` (a malformed
declaration), naming the tensor, the location and what was wrong. Nothing is read before all the
model's declarations are checked.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

import onnx
from onnx import AttributeProto, GraphProto, ModelProto, TensorProto, numpy_helper

from onnxforge.runtime.errors import ModelError, UnsafeModelError
from onnxforge.runtime.modelio.dtypes import storage_bytes
from onnxforge.runtime.modelio.protos import copy_model

__all__ = ["ExternalRef", "external_tensors", "check_location", "load_external_data", "externalize",
           "MAX_EXTERNAL_BYTES"]

MAX_EXTERNAL_BYTES = 2**31 - 1  # a model larger than this cannot be handed to ONNX Runtime as one message
KEYS = ("location", "offset", "length", "checksum")
_DRIVE = re.compile(r"^[A-Za-z]:")


@dataclass
class ExternalRef:
    """One tensor whose bytes live in another file, as declared (checked by :func:`_declared`)."""

    where: str  # e.g. "initializer 'fc1.weight'" or "attribute 'value' of node 'c0' (Constant)"
    tensor: TensorProto
    location: str
    offset: int
    length: int | None


def _tensors_of_graph(graph: GraphProto, where: str, out: list) -> None:
    for t in graph.initializer:
        out.append((f"{where}initializer '{t.name}'", t))
    for s in graph.sparse_initializer:
        name = s.values.name or s.indices.name
        out.append((f"{where}sparse initializer '{name}' (values)", s.values))
        out.append((f"{where}sparse initializer '{name}' (indices)", s.indices))
    for node in graph.node:
        _tensors_of_node(node, where, out)


def _tensors_of_node(node, where: str, out: list) -> None:
    label = f"node '{node.name}' ({node.op_type})" if node.name else f"a {node.op_type} node"
    for attr in node.attribute:
        _tensors_of_attribute(attr, f"{where}attribute '{attr.name}' of {label}", out)


def _tensors_of_attribute(attr: AttributeProto, at: str, out: list) -> None:
    if attr.type == AttributeProto.TENSOR or attr.HasField("t"):
        out.append((at, attr.t))
    for i, t in enumerate(attr.tensors):
        out.append((f"{at}[{i}]", t))
    if attr.HasField("sparse_tensor"):
        out.append((f"{at} (values)", attr.sparse_tensor.values))
        out.append((f"{at} (indices)", attr.sparse_tensor.indices))
    for i, s in enumerate(attr.sparse_tensors):
        out.append((f"{at}[{i}] (values)", s.values))
        out.append((f"{at}[{i}] (indices)", s.indices))
    if attr.HasField("g"):
        _tensors_of_graph(attr.g, f"{at} > ", out)
    for i, g in enumerate(attr.graphs):
        _tensors_of_graph(g, f"{at}[{i}] > ", out)


def all_tensors(model: ModelProto) -> list[tuple[str, TensorProto]]:
    """Every tensor a model holds, with a phrase saying where it sits."""
    out: list = []
    _tensors_of_graph(model.graph, "", out)
    for f in model.functions:
        for attr in f.attribute_proto:  # default values of the function's attributes
            _tensors_of_attribute(attr, f"default attribute '{attr.name}' of function '{f.domain}.{f.name}'", out)
        for node in f.node:
            _tensors_of_node(node, f"function '{f.domain}.{f.name}' > ", out)
    for i, info in enumerate(model.training_info):
        _tensors_of_graph(info.initialization, f"training_info[{i}].initialization > ", out)
        _tensors_of_graph(info.algorithm, f"training_info[{i}].algorithm > ", out)
    return out


def _whole_number(where: str, key: str, text: str) -> int:
    # digits only: no sign, no spaces (str.strip would drop control characters int() refuses)
    if not re.fullmatch(r"[0-9]{1,20}", text):
        kind = "negative" if text.startswith("-") else "not a whole number"
        raise ModelError(f"{where}: external data '{key}' is {text!r}, {kind}; it must be a whole number of bytes >= 0")
    return int(text)


def _declared(where: str, tensor: TensorProto) -> ExternalRef:
    seen: dict = {}
    for entry in tensor.external_data:
        if entry.key not in KEYS:
            raise UnsafeModelError(f"{where}: unknown external data key {entry.key!r}; the ONNX spec allows {', '.join(KEYS)}")
        if entry.key in seen:
            raise UnsafeModelError(f"{where}: external data key '{entry.key}' is given twice")
        seen[entry.key] = entry.value
    location = seen.get("location", "")
    if not location:
        raise ModelError(f"{where}: its data is marked external but no 'location' names the file")
    offset = _whole_number(where, "offset", seen["offset"]) if "offset" in seen else 0
    length = _whole_number(where, "length", seen["length"]) if "length" in seen else None
    return ExternalRef(where, tensor, location, offset, length)


def expected_bytes(where: str, tensor: TensorProto) -> int:
    """Bytes the tensor's type and shape need as raw data."""
    if tensor.data_type in (TensorProto.UNDEFINED, TensorProto.STRING):
        kind = "strings" if tensor.data_type == TensorProto.STRING else "no data type"
        raise ModelError(f"{where}: a tensor of {kind} cannot keep its data in an external file")
    if any(d < 0 for d in tensor.dims):
        raise ModelError(f"{where}: negative dimension in shape {list(tensor.dims)}")
    return storage_bytes(tensor.data_type, tensor.dims, where)


def check_location(location: str, base: Path, where: str = "external data", *, must_exist: bool = True) -> Path:
    """The file ``location`` names inside ``base``; :class:`UnsafeModelError` for any escape.

    Also used when saving (``must_exist=False``: the components that exist are checked), so a
    model is never written with data outside its folder."""
    if "\x00" in location:
        raise UnsafeModelError(f"{where}: external data location {location!r} contains a NUL byte")
    if os.path.isabs(location) or location.startswith(("/", "\\")) or _DRIVE.match(location):
        raise UnsafeModelError(f"{where}: external data location '{location}' is an absolute path; "
                               "onnxforge reads only files inside the model's folder")
    parts = re.split(r"[\\/]", location)
    if ".." in parts:
        raise UnsafeModelError(f"{where}: external data location '{location}' has a '..' segment, which leaves "
                               "the model's folder")
    parts = [p for p in parts if p not in ("", ".")]
    if not parts:
        raise ModelError(f"{where}: external data location {location!r} names no file")
    base = Path(os.path.realpath(base))
    current = base
    for part in parts:
        current = current / part
        try:
            info = os.lstat(current)
        except FileNotFoundError:
            if not must_exist:
                return base.joinpath(*parts)
            raise ModelError(f"{where}: external data file '{location}' does not exist in '{base}'") from None
        except OSError as exc:
            raise ModelError(f"{where}: external data file '{location}' cannot be read ({exc.strerror})") from None
        if stat.S_ISLNK(info.st_mode):
            raise UnsafeModelError(f"{where}: external data location '{location}' goes through a symbolic link "
                                   f"('{current.relative_to(base)}'); onnxforge does not follow links from a model")
    if not stat.S_ISREG(info.st_mode):
        raise UnsafeModelError(f"{where}: external data location '{location}' is not a regular file")
    if info.st_nlink > 1:
        raise UnsafeModelError(f"{where}: external data file '{location}' has {info.st_nlink} hard links; "
                               "onnxforge refuses hard-linked data files, which can alias files outside the folder")
    real = Path(os.path.realpath(current))
    if base not in real.parents:
        raise UnsafeModelError(f"{where}: external data location '{location}' resolves to '{real}', outside "
                               f"the model's folder '{base}'")
    return current


def external_tensors(model: ModelProto) -> list[ExternalRef]:
    """The declarations of every tensor marked external, checked for form (not yet for files)."""
    refs = []
    for where, tensor in all_tensors(model):
        if tensor.data_location == TensorProto.EXTERNAL:
            refs.append(_declared(where, tensor))
        elif len(tensor.external_data):
            raise UnsafeModelError(f"{where}: has external data entries but is not marked external; "
                                   "a conforming writer never produces this")
    return refs


def load_external_data(model: ModelProto, base_dir: Path | None, *, max_bytes: int = MAX_EXTERNAL_BYTES,
                       source: str = "the model") -> ModelProto:
    """Check every external declaration of ``model`` against ``base_dir``, then read the bytes into
    the tensors (in place). ``base_dir`` None (a model given as bytes or a proto) allows none."""
    refs = external_tensors(model)
    if not refs:
        return model
    if base_dir is None:
        raise UnsafeModelError(f"{refs[0].where}: {source} keeps tensor data in the file '{refs[0].location}', "
                               "but it was not loaded from a path; load it from its file so its folder is known")
    plans, total = [], 0
    for ref in refs:
        path = check_location(ref.location, base_dir, ref.where)
        size = os.stat(path).st_size
        need = expected_bytes(ref.where, ref.tensor)
        if ref.offset > size:
            raise ModelError(f"{ref.where}: external data offset {ref.offset} is past the end of '{ref.location}' "
                             f"({size} bytes)")
        length = size - ref.offset if ref.length is None else ref.length
        if ref.offset + length > size:
            raise ModelError(f"{ref.where}: external data offset {ref.offset} + length {length} runs past the end of "
                             f"'{ref.location}' ({size} bytes)")
        if length != need:
            raise ModelError(f"{ref.where}: external data length is {length} bytes, but a "
                             f"{onnx.TensorProto.DataType.Name(ref.tensor.data_type)} tensor of shape "
                             f"{list(ref.tensor.dims)} needs {need}")
        total += length
        if total > max_bytes:
            raise UnsafeModelError(f"{source}'s external data adds up to more than {max_bytes} bytes, the limit")
        plans.append((ref, path, length))
    for ref, path, length in plans:
        ref.tensor.raw_data = _read(ref, path, length)
        del ref.tensor.external_data[:]
        ref.tensor.data_location = TensorProto.DEFAULT
    return model


def _read(ref: ExternalRef, path: Path, length: int) -> bytes:
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise UnsafeModelError(f"{ref.where}: external data file '{ref.location}' cannot be opened safely "
                               f"({exc.strerror})") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_nlink > 1:
            raise UnsafeModelError(f"{ref.where}: external data file '{ref.location}' changed while it was read")
        data = os.pread(fd, length, ref.offset) if length else b""
    finally:
        os.close(fd)
    if len(data) != length:
        raise ModelError(f"{ref.where}: external data file '{ref.location}' ended after {len(data)} of {length} bytes")
    return data


def externalize(model: ModelProto, location: str, size_threshold: int) -> tuple[ModelProto, bytes]:
    """A copy of ``model`` whose tensors of at least ``size_threshold`` bytes point into one data
    file at ``location`` (each 64-byte aligned, as onnx's writer does for memory mapping), and the
    bytes of that file."""
    copy = copy_model(model)
    chunks, offset = [], 0
    for _where, tensor in all_tensors(copy):
        if tensor.data_type == TensorProto.STRING:
            continue
        if tensor.HasField("raw_data"):
            raw = tensor.raw_data
        elif any((tensor.float_data, tensor.int32_data, tensor.int64_data, tensor.double_data, tensor.uint64_data)):
            raw = numpy_helper.from_array(numpy_helper.to_array(tensor)).raw_data
        else:
            continue
        if len(raw) < size_threshold:
            continue
        pad = (-offset) % 64
        chunks.append(b"\0" * pad)
        offset += pad
        for field in ("float_data", "int32_data", "int64_data", "double_data", "uint64_data", "raw_data"):
            tensor.ClearField(field)
        tensor.data_location = TensorProto.EXTERNAL
        for key, value in (("location", location), ("offset", str(offset)), ("length", str(len(raw)))):
            entry = tensor.external_data.add()
            entry.key, entry.value = key, value
        chunks.append(raw)
        offset += len(raw)
    return copy, b"".join(chunks)
