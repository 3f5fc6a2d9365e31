"""Fixtures for the serving tests: small models on disk and real servers on free loopback ports."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnxforge.graphs import mlp
from onnxforge.runtime import load
from onnxforge.runtime.modelio.files import save_model, set_metadata
from onnxforge.runtime.server.app import Server, ServerConfig

LABELS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def mixed_model() -> onnx.ModelProto:
    """Two inputs and four outputs of different datatypes, every one with batch axis N."""
    w = np.random.default_rng(7).standard_normal((4, 2)).astype(np.float32)
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["y"]),
        helper.make_node("ReduceSum", ["ids", "axes"], ["total"], keepdims=0),
        helper.make_node("Greater", ["x", "zero"], ["positive"]),
        helper.make_node("Cast", ["x"], ["half"], to=TensorProto.FLOAT16),
    ]
    graph = helper.make_graph(
        nodes, "mixed",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4]),
         helper.make_tensor_value_info("ids", TensorProto.INT64, ["N", 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2]),
         helper.make_tensor_value_info("total", TensorProto.INT64, ["N"]),
         helper.make_tensor_value_info("positive", TensorProto.BOOL, ["N", 4]),
         helper.make_tensor_value_info("half", TensorProto.FLOAT16, ["N", 4])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(np.array([1], np.int64), "axes"),
         numpy_helper.from_array(np.array(0, np.float32), "zero")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory):
    """A folder with digits.onnx (an MLP 64-32-10 with class labels) and mixed.onnx."""
    folder = tmp_path_factory.mktemp("models")
    save_model(set_metadata(mlp(64, [32], 10, seed=3), {"labels": LABELS}), folder / "digits.onnx")
    save_model(mixed_model(), folder / "mixed.onnx")
    return folder


@pytest.fixture(scope="session")
def sessions(model_dir):
    """In-process sessions over the same files: the reference every server answer must equal."""
    return {name: load(model_dir / f"{name}.onnx", device="cpu") for name in ("digits", "mixed")}


@pytest.fixture(scope="session")
def server(model_dir):
    """One server over the model folder, shared by the tests that do not change its settings."""
    srv = Server([model_dir], ServerConfig(port=0, device="cpu", max_body_mb=1))
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture
def start_server():
    """Start a server with given models and settings; stopped after the test."""
    started = []

    def start(models, **config):
        srv = Server(models, ServerConfig(port=0, device="cpu", **config))
        srv.start()
        started.append(srv)
        return srv

    yield start
    for srv in started:
        srv.stop()


@pytest.fixture(scope="session")
def labels():
    return LABELS


@pytest.fixture(scope="session")
def triton():
    """A function that makes a Triton HTTP client for a server URL."""
    import tritonclient.http as httpclient

    def make(url: str):
        return httpclient.InferenceServerClient(url.split("://", 1)[1], connection_timeout=30, network_timeout=30)

    return make
