"""Inference responses of the Open Inference Protocol v2: outputs to a JSON body (with the binary
tensor data extension), and the classification extension's top classes."""

from __future__ import annotations

import json
import struct
from typing import Any

import numpy as np
import orjson

from onnxforge.runtime.errors import InputError
from onnxforge.runtime.server.datatypes import datatype_of

__all__ = ["classify", "encode_infer_response", "output_arrays", "tensor_bytes"]


def classify(array: np.ndarray, k: int, labels: list | None) -> np.ndarray:
    """The classification extension: the top ``k`` classes of the last axis as strings
    ``"score:index"`` or ``"score:index:label"``, best first, shape ``[..., k]``."""
    if array.ndim == 0 or array.dtype.kind not in "iuf":
        raise InputError(f"classification needs a numeric output with a class axis; got {array.dtype.name} "
                         f"{list(array.shape)}")
    k = min(k, array.shape[-1])
    order = np.argsort(-array, axis=-1, kind="stable")[..., :k]
    scores = np.take_along_axis(array, order, axis=-1)
    out = np.empty(order.shape, dtype=object)
    for pos in np.ndindex(order.shape):
        index = int(order[pos])
        text = f"{float(scores[pos]):f}:{index}"
        if labels and index < len(labels):
            text += f":{labels[index]}"
        out[pos] = text
    return out


def _bytes_payload(array: np.ndarray) -> bytes:
    """A BYTES tensor's elements, each after its 4-byte little-endian length."""
    parts = []
    for item in array.ravel():
        raw = item if isinstance(item, bytes) else str(item).encode("utf-8")
        parts.append(struct.pack("<I", len(raw)))
        parts.append(raw)
    return b"".join(parts)


def tensor_bytes(array: np.ndarray, datatype: str) -> bytes:
    """The binary form of an output (the binary tensor data extension, gRPC's raw contents)."""
    return _bytes_payload(array) if datatype == "BYTES" else np.ascontiguousarray(array).tobytes()


def output_arrays(results: dict, requested: list, labels: list | None = None):
    """``(requested output, array, datatype)`` for each output asked for, classified where asked."""
    for want in requested:
        array = np.asarray(results[want.name])
        if want.classification:
            array = classify(array, want.classification, labels)
        yield want, array, datatype_of(array.dtype)


def _finite(array: np.ndarray) -> bool:
    return array.dtype.kind != "f" or bool(np.isfinite(array).all())


def encode_infer_response(model: str, version: str, request_id, results: dict, requested: list,
                          labels: list | None = None) -> tuple[bytes, int | None]:
    """The response body and, when some outputs travel as binary, the JSON header's length
    (for the ``Inference-Header-Content-Length`` header).

    JSON data is written by orjson straight from the numpy array (a batch of 32 rows of 10 floats:
    6 us against 340 for ``tolist`` and ``json.dumps``); a float32 value is written as the
    shortest text that reads back as the same float32. An answer holding NaN or an infinity is
    written by ``json`` (as ``NaN``/``Infinity``, which Triton writes and its clients read;
    orjson would write ``null``)."""
    entries, chunks, fast = [], [], True
    for want, array, datatype in output_arrays(results, requested, labels):
        entry = {"name": want.name, "datatype": datatype, "shape": list(array.shape)}
        if want.binary:
            payload = tensor_bytes(array, datatype)
            entry["parameters"] = {"binary_data_size": len(payload)}
            chunks.append(payload)
        elif datatype == "BYTES":
            entry["data"] = [str(v) for v in array.ravel()]
        else:
            flat = np.ascontiguousarray(array).ravel()
            fast = fast and _finite(flat) and flat.dtype.isnative
            entry["data"] = flat
        entries.append(entry)
    response: dict[str, Any] = {"model_name": model, "model_version": version}
    if request_id is not None:
        response["id"] = request_id
    response["outputs"] = entries
    if fast:
        header = orjson.dumps(response, option=orjson.OPT_SERIALIZE_NUMPY)
    else:
        for entry in entries:
            if isinstance(entry.get("data"), np.ndarray):
                entry["data"] = entry["data"].tolist()
        header = json.dumps(response, separators=(",", ":")).encode()
    if not chunks:
        return header, None
    return b"".join([header, *chunks]), len(header)
