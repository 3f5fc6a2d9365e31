"""BYTES in, text out: an image model takes encoded image files as one BYTES input and answers
the class names `onnxforge infer` gives, over REST and gRPC alike."""

from __future__ import annotations

import io

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from PIL import Image
from tritonclient.utils import InferenceServerException

from onnxforge.graphs import convnet
from onnxforge.runtime import load
from onnxforge.runtime.modelio.files import save_model, set_metadata
from onnxforge.runtime.tasks.raw import predict_raw


def _png(kind: int) -> bytes:
    pixels = np.zeros((8, 8), np.uint8)
    pixels[[slice(0), slice(None), slice(None, None, 2), slice(None), slice(4)][kind]] = 255
    if kind == 3:
        pixels[:] = 0
        pixels[:, ::2] = 255
    out = io.BytesIO()
    Image.fromarray(pixels, "L").save(out, format="PNG")
    return out.getvalue()


@pytest.fixture
def image_server(tmp_path, start_server):
    labels = [f"class{i}" for i in range(10)]
    save_model(set_metadata(convnet((1, 8, 8), (4,), dense=(16,), classes=10, seed=1), {"labels": labels}), tmp_path / "img.onnx")
    return start_server([tmp_path / "img.onnx"], grpc_port=0), load(tmp_path / "img.onnx", device="cpu")


def test_encoded_images_in_class_names_out(image_server, triton):
    srv, session = image_server
    images = [_png(s) for s in range(5)]
    want = predict_raw(session, images)
    assert len(set(want)) > 1  # the check could fail
    item = httpclient.InferInput("image", [5], "BYTES")
    item.set_data_from_numpy(np.array(images, dtype=np.object_), binary_data=True)
    result = triton(srv.url).infer("img", [item])
    assert [a.decode() for a in result.as_numpy("answer")] == want
    with grpcclient.InferenceServerClient(srv.grpc_address) as client:
        g = grpcclient.InferInput("image", [5], "BYTES")
        g.set_data_from_numpy(np.array(images, dtype=np.object_))
        assert [a.decode() for a in client.infer("img", [g]).as_numpy("answer")] == want


def test_a_bytes_element_that_is_no_image_is_refused(image_server, triton):
    srv, _ = image_server
    item = httpclient.InferInput("image", [1], "BYTES")
    item.set_data_from_numpy(np.array([b"not an image"], dtype=np.object_), binary_data=True)
    with pytest.raises(InferenceServerException, match=r"image 1 \(encoded bytes\) cannot be decoded") as caught:
        triton(srv.url).infer("img", [item])
    assert caught.value.status() == "400"
    # the model's own inputs still work, and their errors are the usual ones
    with pytest.raises(InferenceServerException, match="unknown input 'pixels'"):
        bad = httpclient.InferInput("pixels", [1, 1, 8, 8], "FP32")
        bad.set_data_from_numpy(np.zeros((1, 1, 8, 8), np.float32))
        triton(srv.url).infer("img", [bad])
