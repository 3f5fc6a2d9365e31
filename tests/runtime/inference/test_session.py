from __future__ import annotations

import threading

import numpy as np
import onnxruntime
import pytest

from onnxforge.graphs import mlp
from onnxforge.runtime import InputError, load


@pytest.fixture(scope="module")
def session():
    return load(mlp(8, [6], 3, seed=2), device="cpu")


def test_inputs_and_outputs_describe_the_model(session):
    (x,) = session.inputs
    assert x.name == "x" and x.shape == ("N", 8) and x.dtype == np.float32
    (out,) = session.outputs
    assert out.name == "logits" and out.shape == ("N", 3)
    assert session.device.name == "cpu" and session.metadata["classes"] == 3


@pytest.mark.parametrize("feeds,message", [
    ({}, "missing input 'x' (expected float32 [N, 8])"),
    ({"x": np.zeros((2, 8), np.float32), "z": np.zeros(1)}, "unknown input 'z'; the model's inputs are: x"),
    ({"x": np.zeros((2, 8), np.int64)}, "input 'x' expects dtype float32, got int64"),
    ({"x": np.zeros(8, np.float32)}, "input 'x' expects rank 2 float32 [N, 8], got rank 1 with shape [8]"),
    ({"x": np.zeros((2, 9), np.float32)}, "input 'x' expects size 8 on axis 1 float32 [N, 8], got shape [2, 9]"),
    ({"x": np.array([["a"] * 8])}, "input 'x' expects dtype float32, got str"),
])
def test_bad_feeds_raise_typed_errors_that_name_the_input(session, feeds, message):
    with pytest.raises(InputError) as info:
        session.run(feeds)
    assert message in str(info.value)


def test_same_kind_dtypes_are_cast(session, rng):
    x = rng.standard_normal((3, 8))
    np.testing.assert_allclose(session.run({"x": x})["logits"], session.run({"x": x.astype(np.float32)})["logits"])


def test_matches_plain_onnxruntime(session, rng):
    x = rng.standard_normal((5, 8)).astype(np.float32)
    plain = onnxruntime.InferenceSession(session.model.SerializeToString(), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(session.run({"x": x})["logits"], plain.run(None, {"x": x})[0], atol=1e-6)


def test_predict_chunks_like_one_run(session, rng):
    x = rng.standard_normal((103, 8)).astype(np.float32)
    np.testing.assert_allclose(session.predict(x, batch_size=10), session.run({"x": x})["logits"], atol=1e-6)


def test_threads_share_one_session(session, rng):
    inputs = [rng.standard_normal((4, 8)).astype(np.float32) for _ in range(16)]
    expected = [session.run({"x": x})["logits"] for x in inputs]
    results = [None] * len(inputs)

    def work(i):
        for _ in range(20):
            results[i] = session.run({"x": inputs[i]})["logits"]

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(inputs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for got, want in zip(results, expected):
        np.testing.assert_array_equal(got, want)


def _reshape_to_three():
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph([helper.make_node("Reshape", ["x", "shape"], ["y"], name="to_three")], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N"])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3])],
                              [numpy_helper.from_array(np.array([3], np.int64), "shape")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def test_a_failing_run_is_one_error_line_and_ort_logs_only_when_verbose(capfd):
    """ONNX Runtime logs a failing node to stderr before raising; the error line says it all, so
    its log appears only with verbose=True."""
    for verbose in (False, True):
        session = load(_reshape_to_three(), device="cpu", verbose=verbose)
        capfd.readouterr()
        with pytest.raises(InputError, match=r"^ONNX Runtime rejected the feeds: Reshape node 'to_three': ") as caught:
            session.run({"x": np.zeros(4, np.float32)})
        assert "\n" not in str(caught.value) and "[ONNXRuntimeError]" not in str(caught.value)
        err = capfd.readouterr().err
        assert ("to_three" in err) == verbose, err
