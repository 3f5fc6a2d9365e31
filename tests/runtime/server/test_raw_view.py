"""The raw BYTES face of a text model is chosen from the input a request declares, in one parse."""

from __future__ import annotations

import json

import numpy as np
import pytest

from onnxforge.runtime.errors import InputError
from onnxforge.runtime.inference.session import IOInfo
from onnxforge.runtime.server.oip import parse_infer_request

MODEL_IN = [IOInfo("x", ("N", 4), np.dtype(np.int64))]
MODEL_OUT = [IOInfo("logits", ("N", 2), np.dtype(np.float32))]
RAW = ([IOInfo("text", ("N",), np.dtype(object))], [IOInfo("answer", ("N",), np.dtype(object))])


def _parse(inputs: list[dict]):
    body = json.dumps({"inputs": inputs}).encode()
    return parse_infer_request(body, None, MODEL_IN, MODEL_OUT, model="m", max_elements=1 << 20, raw=RAW)


def test_a_request_for_the_model_input_is_read_against_the_model():
    parsed = _parse([{"name": "x", "datatype": "INT64", "shape": [1, 4], "data": [1, 2, 3, 4]}])
    assert not parsed.raw and parsed.feeds["x"].tolist() == [[1, 2, 3, 4]] and parsed.outputs[0].name == "logits"


def test_a_request_declaring_text_takes_the_raw_face():
    parsed = _parse([{"name": "text", "datatype": "BYTES", "shape": [2], "data": ["a b", "c"]}])
    assert parsed.raw and list(parsed.feeds["text"]) == ["a b", "c"] and parsed.outputs[0].name == "answer"


def test_errors_name_the_face_the_request_declared():
    with pytest.raises(InputError, match=r"^input 'text' of model 'm' is BYTES; the request says FP32$"):
        _parse([{"name": "text", "datatype": "FP32", "shape": [1], "data": [1.0]}])
    with pytest.raises(InputError, match=r"^unknown input 'y'; model 'm' has inputs: x$"):
        _parse([{"name": "y", "datatype": "INT64", "shape": [1], "data": [1]}])
