"""The Open Inference Protocol v2 wire format, requests: an inference request (JSON tensors and
the binary tensor data extension) to numpy feeds. Its JSON is parsed by :mod:`.oip_json` (depth
and size limits), responses are written by :mod:`.response`.

Everything a client can get wrong raises :class:`InputError` with a message naming the input,
what was expected and what came; the server answers it with HTTP 400.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass, field
from typing import NoReturn

import numpy as np

from onnxforge.runtime.errors import InputError
from onnxforge.runtime.server.datatypes import DATATYPES, datatype_of, tensor_metadata
from onnxforge.runtime.server.oip_json import MAX_JSON_DEPTH, clip, load_json
from onnxforge.runtime.server.response import classify, encode_infer_response

__all__ = [
    "DATATYPES", "InferRequest", "RequestedOutput", "datatype_of", "encode_infer_response", "classify",
    "parse_infer_request", "tensor_metadata", "MAX_JSON_DEPTH",
]

MAX_DIM = 2**31 - 1
MAX_RANK = 32  # dimensions of one tensor: what numpy supports on every version


@dataclass(frozen=True)
class RequestedOutput:
    name: str
    binary: bool
    classification: int = 0


@dataclass
class InferRequest:
    id: str | None
    feeds: dict
    outputs: list
    parameters: dict = field(default_factory=dict)  # the request's own (e.g. "adapter", see .adapters)
    raw: bool = False  # the request declared the model's raw input (``text``/``image``, see .infer.raw_view)


def _fail(message: str) -> NoReturn:
    raise InputError(message)


def _json_object(value, what: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        _fail(f"{what} must be a JSON object; got {type(value).__name__}")
    return value


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def parse_infer_request(body: bytes, header_length, inputs: list, outputs: list, *, model: str,
                        max_elements: int, keep_bytes: bool = False, raw: tuple[list, list] | None = None) -> InferRequest:
    """Decode one inference request for a model with ``inputs``/``outputs`` (:class:`IOInfo`).

    ``header_length`` is the ``Inference-Header-Content-Length`` header (``None`` when the whole
    body is JSON); ``max_elements`` bounds the elements any one tensor may claim, and four times
    it the bytes of a BYTES tensor padded to its longest string (numpy's fixed-width strings).
    Nothing larger than the body is allocated before the request is checked. With
    ``keep_bytes``, binary ``BYTES`` elements stay ``bytes`` (an object array: encoded images
    need not be UTF-8). ``raw``: the ``(inputs, outputs)`` of the model's raw face; a request that
    declares its input (which the model itself lacks) is read against it (``InferRequest.raw``).
    """
    if header_length is None:
        header, binary = bytes(body), memoryview(b"")
    else:
        text = str(header_length).strip()
        size = int(text) if text.isascii() and text.isdigit() and len(text) < 20 else -1
        if not 0 <= size <= len(body):
            _fail(f"Inference-Header-Content-Length is {clip(repr(header_length))}; it must be a whole number of "
                  f"bytes from 0 to the body's {len(body)}")
        header, binary = bytes(body[:size]), memoryview(body)[size:]
    literals: list = []
    request = load_json(header, literals, body_limit=max_elements)
    if not isinstance(request, dict):
        _fail(f"the request must be a JSON object with an 'inputs' list; got {type(request).__name__}")
    request_id = request.get("id")
    if request_id is not None and not isinstance(request_id, str):
        _fail(f"'id' must be a string; got {type(request_id).__name__}")
    parameters = _json_object(request.get("parameters"), "'parameters'")
    raw_inputs = request.get("inputs")
    if not isinstance(raw_inputs, list) or not raw_inputs:
        _fail("the request must have an 'inputs' list with one entry per model input")

    chosen_raw = raw is not None and _declares(raw_inputs, raw[0][0].name, inputs)
    if raw is not None and chosen_raw:  # the model's raw face: BYTES in (kept as bytes: encoded images need not be UTF-8), answers out
        inputs, outputs, keep_bytes = raw[0], raw[1], True
    expected = {i.name: i for i in inputs}
    feeds: dict = {}
    offset = 0
    for position, entry in enumerate(raw_inputs):
        if not isinstance(entry, dict):
            _fail(f"inputs[{position}] must be a JSON object; got {type(entry).__name__}")
        name = entry.get("name")
        if not isinstance(name, str):
            _fail(f"inputs[{position}] has no 'name' string")
        if name not in expected:
            _fail(f"unknown input '{clip(name)}'; model '{model}' has inputs: {', '.join(expected)}")
        if name in feeds:
            _fail(f"input '{name}' appears twice in the request")
        info = expected[name]
        want = datatype_of(info.dtype)
        datatype = entry.get("datatype")
        if not isinstance(datatype, str) or datatype not in DATATYPES:
            _fail(f"input '{name}' has datatype {clip(repr(datatype))}, which is not one of {', '.join(DATATYPES)}")
        if datatype != want:
            _fail(f"input '{name}' of model '{model}' is {want}; the request says {datatype}")
        shape = _shape(name, entry.get("shape"), max_elements)
        count = math.prod(shape)
        params = _json_object(entry.get("parameters"), f"parameters of input '{name}'")
        data_size = params.get("binary_data_size")
        if data_size is not None:
            if "data" in entry:
                _fail(f"input '{name}' has both 'data' and binary_data_size; send one of them")
            if not _is_int(data_size) or data_size < 0:
                _fail(f"binary_data_size of input '{name}' must be a non-negative integer; got {clip(data_size)}")
            if offset + data_size > len(binary):
                _fail(f"input '{name}' says binary_data_size {data_size}, but only {len(binary) - offset} bytes of "
                      f"binary data are left in the body")
            chunk = binary[offset : offset + data_size]
            offset += data_size
            array = _from_binary(name, datatype, chunk, count, 4 * max_elements, keep_bytes)
        elif "data" in entry:
            array = _from_json(name, datatype, entry["data"], count, 4 * max_elements, bool(literals))
        else:
            _fail(f"input '{name}' has neither 'data' nor a binary_data_size parameter")
        feeds[name] = array.reshape(shape)
    if offset != len(binary):
        _fail(f"the body carries {len(binary)} bytes of binary data after the JSON header, but the inputs' "
              f"binary_data_size add up to {offset}")
    missing = [n for n in expected if n not in feeds]
    if missing:
        _fail(f"missing input '{missing[0]}'; model '{model}' needs: {', '.join(expected)}")
    return InferRequest(request_id, feeds, _requested_outputs(request.get("outputs"), parameters, outputs, model),
                        parameters, chosen_raw)


def _declares(entries: list, name: str, inputs: list) -> bool:
    """Whether the request's ``entries`` declare the input ``name``, which the model's ``inputs`` lack."""
    return all(i.name != name for i in inputs) and any(isinstance(e, dict) and e.get("name") == name for e in entries)


def _shape(name: str, shape, max_elements: int) -> list[int]:
    if not isinstance(shape, list) or not all(_is_int(d) for d in shape):
        _fail(f"input '{name}' needs a 'shape' list of integers; got {clip(json.dumps(shape))}")
    if len(shape) > MAX_RANK:
        _fail(f"input '{name}' has a shape of {len(shape)} dimensions, over the limit of {MAX_RANK}")
    for dim in shape:
        if dim < 0:
            _fail(f"input '{name}' has a negative dimension {dim} in shape {shape}")
        if dim > MAX_DIM:
            _fail(f"input '{name}' has dimension {clip(str(dim), 30)} in shape {clip(str(shape))}, over the "
                  f"limit of {MAX_DIM}")
    count = math.prod(shape)
    if count > max_elements:
        _fail(f"input '{name}' has shape {shape}, {count} elements, more than the {max_elements} a request "
              f"within the body size limit can carry")
    # an empty tensor may not name absurd other dimensions: numpy refuses shapes whose nonzero
    # dimensions multiply past what an array could address ([0, 2**31-1, 2**31-1] was a 500)
    spread = math.prod(d for d in shape if d)
    if count == 0 and spread > max_elements:
        _fail(f"input '{name}' has shape {shape}: empty, but its other dimensions multiply to {spread}, more than "
              f"the {max_elements} elements allowed")
    return shape


def _strings(name: str, items, count: int, max_bytes: int) -> np.ndarray:
    """``items`` (a flat list or object array of str) as a numpy string array, which pads every
    string to the longest: refused when that would take more than ``max_bytes``."""
    longest = max(map(len, items), default=0)
    if count * longest * 4 > max_bytes:
        _fail(f"input '{name}' has {count} strings padded to its longest ({longest} characters) would take "
              f"{count * longest * 4} bytes, more than the {max_bytes} allowed; send strings of similar length")
    try:
        "".join(items).encode("utf-8")
    except UnicodeEncodeError:
        _fail(f"input '{name}' holds a string with a lone surrogate (such as \\ud800), which is not valid Unicode")
    return np.array(items, dtype=np.str_)


def _from_binary(name: str, datatype: str, chunk: memoryview, count: int, max_bytes: int,
                 keep_bytes: bool = False) -> np.ndarray:
    if datatype == "BYTES":
        items: list = []
        pos = 0
        while pos < len(chunk):
            if len(items) == count:
                _fail(f"input '{name}' has {count} elements by its shape but its binary data holds more strings")
            if pos + 4 > len(chunk):
                _fail(f"binary BYTES data of input '{name}' ends inside a 4-byte length prefix")
            (n,) = struct.unpack_from("<I", chunk, pos)
            if pos + 4 + n > len(chunk):
                _fail(f"binary BYTES data of input '{name}' has an element of {n} bytes that runs past its end")
            raw = bytes(chunk[pos + 4 : pos + 4 + n])
            items.append(raw if keep_bytes else _utf8(name, raw))
            pos += 4 + n
        if len(items) != count:
            _fail(f"input '{name}' has {count} elements by its shape but its binary data holds {len(items)} strings")
        if keep_bytes:
            array = np.empty(len(items), dtype=object)
            array[:] = items
            return array
        return _strings(name, items, count, max_bytes)
    dtype = DATATYPES[datatype]
    if len(chunk) != count * dtype.itemsize:
        _fail(f"input '{name}' has {count} elements of {datatype} by its shape ({count * dtype.itemsize} bytes) "
              f"but its binary_data_size is {len(chunk)}")
    array = np.frombuffer(chunk, dtype=dtype.newbyteorder("<"), count=count)
    return array if array.flags.aligned and array.dtype.isnative else array.astype(dtype)


def _utf8(name: str, raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        _fail(f"input '{name}' holds a string that is not valid UTF-8")


def _leaf_types(values: list) -> set:
    """The types of the values in nested lists (C-speed per element; a Python step per sub-list)."""
    types = set(map(type, values))
    if list in types:
        types.discard(list)
        for value in values:
            if type(value) is list:
                types |= _leaf_types(value)
    return types


# What JSON values each kind of tensor takes, and words for the rest (checked in this order).
_ALLOWED: dict[str, set[type]] = {"b": {bool}, "i": {int}, "u": {int}, "f": {int, float}}
_TYPE_WORDS = {str: "strings", dict: "objects", type(None): "nulls", bool: "true/false values",
               float: "numbers with fractions", int: "integers"}
_KIND_WORDS = {"b": "true/false", "i": "integers", "u": "integers", "f": "numbers"}


def _number(value) -> str:
    text = str(value)
    return text if len(text) <= 30 else f"{text[:12]}...({len(text)} digits)"


def _direct_floats(data: list, want: np.dtype, count: int) -> np.ndarray | None:
    """Numbers with a fraction among them straight to a float datatype, or ``None`` when the
    general way must read them. Half the time of a float64 array and its cast, and the same
    values: with a fraction among the numbers numpy reads each as a double either way (integers
    alone are read as int64 and cast once, so they go the general way, as does anything its
    checks look at: ragged lists, counts off the shape, non-finite values, overflow)."""
    try:
        with np.errstate(over="ignore"):
            array = np.array(data, dtype=want)
    except (ValueError, OverflowError, TypeError):
        return None
    return array.ravel() if array.size == count and np.isfinite(array).all() else None


def _from_json(name: str, datatype: str, data, count: int, max_bytes: int, literals: bool) -> np.ndarray:
    """The ``data`` of one input as a flat array of ``datatype``. Leaf types are checked before
    numpy sees the list, so strings never make a fixed-width array of the longest one's size."""
    if not isinstance(data, list):
        data = [data]
    types = _leaf_types(data)
    if datatype == "BYTES":
        if types - {str}:
            bad = next(t for t in _TYPE_WORDS if t in types - {str})
            _fail(f"input '{name}' is BYTES: its data must be strings; got {_TYPE_WORDS[bad]}")
        try:
            array = np.array(data, dtype=object)
        except ValueError:
            _fail(f"input '{name}' has 'data' that is not a regular (rectangular) list of values")
        flat = array.ravel()
        if any(type(v) is not str for v in flat):  # a ragged list makes an array of lists
            _fail(f"input '{name}' has 'data' that is not a regular (rectangular) list of values")
        if array.size != count:
            _fail(f"input '{name}' has {count} elements by its shape but its data holds {array.size}")
        return _strings(name, flat, count, max_bytes)
    want = DATATYPES[datatype]
    unexpected = types - _ALLOWED[want.kind]
    if unexpected:
        bad = next(t for t in _TYPE_WORDS if t in unexpected)
        _fail(f"input '{name}' is {datatype}: its data must be {_KIND_WORDS[want.kind]}; got {_TYPE_WORDS[bad]}")
    if want.kind == "f" and float in types:
        direct = _direct_floats(data, want, count)
        if direct is not None:
            return direct
    try:
        array = np.array(data)
    except (ValueError, OverflowError):
        _fail(f"input '{name}' has 'data' that is not a regular (rectangular) list of values")
    if array.size != count:
        _fail(f"input '{name}' has {count} elements by its shape but its data holds {array.size}")
    if want.kind in "iu":
        if array.size and array.dtype.kind not in "iu":  # ints that fit neither int64 nor uint64
            array = np.array(data, dtype=object)
        info = np.iinfo(want)  # type: ignore[type-var]  # an integer dtype here (kind "i" or "u")
        if array.size:
            low, high = array.min(), array.max()
            if low < info.min or high > info.max:
                bad = low if low < info.min else high
                _fail(f"input '{name}' is {datatype}: value {_number(bad)} is outside [{info.min}, {info.max}]")
        return array.astype(want).ravel()
    if want.kind == "f":
        if array.dtype == object:
            try:
                array = array.astype(np.float64)
            except OverflowError:
                big = max(array.ravel(), key=abs)
                _fail(f"input '{name}' is {datatype}: value {_number(big)} is too large for a 64-bit float")
        source = array
        with np.errstate(over="ignore"):
            array = array.astype(want).ravel()
        if array.size and not np.isfinite(array).all():
            overflow = np.isinf(array) & np.isfinite(source.ravel())
            if overflow.any():
                bad = source.ravel()[np.argmax(overflow)]
                top = float(np.finfo(want).max)
                _fail(f"input '{name}' is {datatype}: value {_number(bad)} is outside its range [{-top:g}, {top:g}]")
            if not literals and np.isinf(array).any():
                _fail(f"input '{name}' is {datatype}: its data has a number too large for a 64-bit float "
                      f"(such as 1e400); write Infinity if that is what you mean")
        return array
    return array.astype(want).ravel()


def _requested_outputs(raw, parameters: dict, outputs: list, model: str) -> list:
    binary_default = parameters.get("binary_data_output", False)
    if not isinstance(binary_default, bool):
        _fail(f"parameter binary_data_output must be true or false; got {clip(repr(binary_default))}")
    names = [o.name for o in outputs]
    if raw is None:
        return [RequestedOutput(n, binary_default) for n in names]
    if not isinstance(raw, list):
        _fail(f"'outputs' must be a list of objects with a 'name'; got {type(raw).__name__}")
    result, seen = [], set()
    for position, entry in enumerate(raw):
        name = entry.get("name") if isinstance(entry, dict) else None
        if not isinstance(name, str):
            _fail(f"outputs[{position}] must be an object with a 'name' string")
        if name not in names:
            _fail(f"unknown output '{clip(name)}'; model '{model}' has outputs: {', '.join(names)}")
        if name in seen:
            _fail(f"output '{name}' is requested twice")
        seen.add(name)
        params = _json_object(entry.get("parameters"), f"parameters of output '{name}'")
        binary = params.get("binary_data", binary_default)
        classes = params.get("classification", 0)
        if not isinstance(binary, bool):
            _fail(f"binary_data of output '{name}' must be true or false; got {clip(repr(binary))}")
        if not _is_int(classes) or classes < 0:
            _fail(f"classification of output '{name}' must be a non-negative integer; got {clip(repr(classes))}")
        result.append(RequestedOutput(name, binary, classes))
    return result
