"""Where each parameter's bytes lie in a serialized ``.onnx`` file.

A bundle's JavaScript writes the trained ``model.onnx`` without a protobuf library: the bundle's
inference model stores every float parameter as ``raw_data`` (little-endian float32), the manifest
records the byte range of each, and the trained file is the original bytes with those ranges
overwritten (same length, so no length prefix changes). The ranges are found by walking the wire
format (ModelProto field 7 ``graph`` -> GraphProto field 5 ``initializer`` -> TensorProto field 8
``name``, field 9 ``raw_data``) and checked against the tensors themselves.
"""

from __future__ import annotations

import numpy as np
from onnx import ModelProto, numpy_helper

__all__ = ["raw_data_offsets", "with_raw_data"]

_GRAPH, _INITIALIZER, _NAME, _RAW = 7, 5, 8, 9


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        b = buf[i]
        value |= (b & 0x7F) << shift
        i += 1
        if b < 0x80:
            return value, i
        shift += 7


def _fields(buf: bytes, start: int, end: int):
    """``(field number, start, end)`` of each length-delimited field in ``buf[start:end]``."""
    i = start
    while i < end:
        key, i = _varint(buf, i)
        wire = key & 7
        if wire == 0:
            _, i = _varint(buf, i)
        elif wire == 1:
            i += 8
        elif wire == 5:
            i += 4
        elif wire == 2:
            n, i = _varint(buf, i)
            yield key >> 3, i, i + n
            i += n
        else:
            raise ValueError(f"unexpected protobuf wire type {wire} at byte {i}")


def with_raw_data(model: ModelProto, names) -> ModelProto:
    """``model`` (in place) with the initialisers ``names`` stored as float32 ``raw_data``."""
    wanted = set(names)
    for t in model.graph.initializer:
        if t.name in wanted:
            t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(t).astype(np.float32), t.name))
    return model


def raw_data_offsets(data: bytes, model: ModelProto, names) -> dict[str, list[int]]:
    """``{name: [offset, length]}``: the bytes of each initialiser in ``names`` within ``data``
    (``model`` serialized), each checked to hold the tensor's values."""
    wanted: set[str] = set(names)
    found: dict[str, list[int]] = {}
    for field, gs, ge in _fields(data, 0, len(data)):
        if field != _GRAPH:
            continue
        for f, ts, te in _fields(data, gs, ge):
            if f != _INITIALIZER:
                continue
            name, raw = None, None
            for tf, s, e in _fields(data, ts, te):
                if tf == _NAME:
                    name = data[s:e].decode()
                elif tf == _RAW:
                    raw = [s, e - s]
            if name in wanted and raw is not None:
                found[name] = raw
    inits = {t.name: t for t in model.graph.initializer}
    for name in wanted:
        expected = numpy_helper.to_array(inits[name]).astype("<f4").tobytes()
        at = found.get(name)
        if at is None or data[at[0]: at[0] + at[1]] != expected:
            raise ValueError(f"initialiser {name!r}: its float32 raw_data was not found in the serialized model")
    return found
