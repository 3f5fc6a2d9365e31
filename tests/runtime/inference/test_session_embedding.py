"""The embedding API: chunked predict, session options, warm-up, labels from metadata, I/O
binding (DeviceArray), sequence-to-sequence decoding and many threads on one session."""

from __future__ import annotations

import threading

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnxforge.graphs import mlp, seq2seq
from onnxforge.runtime import ConfigError, InputError, ModelError, load
from onnxforge.runtime.ort.iobinding import DeviceArray
from onnxforge.runtime.modelio.files import set_metadata


def relu_mlp_reference(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    """numpy forward pass of an onnxforge MLP from its initialisers (weights in [out, in])."""
    w = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    h = x.astype(np.float64)
    layer = 1
    while f"fc{layer + 1}.weight" in w:
        h = np.maximum(h @ w[f"fc{layer}.weight"].T + w[f"fc{layer}.bias"], 0)
        layer += 1
    return h @ w[f"fc{layer}.weight"].T + w[f"fc{layer}.bias"]


def add_model() -> onnx.ModelProto:
    """z = a + b over [N, T] with a shared symbolic T; scale = 2a (a second output)."""
    graph = helper.make_graph(
        [helper.make_node("Add", ["a", "b"], ["z"]), helper.make_node("Add", ["a", "a"], ["scale"])], "add",
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, ["N", "T"]),
         helper.make_tensor_value_info("b", TensorProto.FLOAT, ["N", "T"])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, ["N", "T"]),
         helper.make_tensor_value_info("scale", TensorProto.FLOAT, ["N", "T"])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


@pytest.fixture(scope="module")
def model():
    return set_metadata(mlp(16, [12], 4, seed=5), {"labels": ["ant", "bee", "cat", "dog"]})


@pytest.fixture(scope="module")
def session(model):
    return load(model, device="cpu")


def test_predict_chunks_into_one_result_equal_to_numpy(session, model, rng, monkeypatch):
    x = rng.standard_normal((1003, 16)).astype(np.float32)
    rows = []
    real_run = session.run
    monkeypatch.setattr(session, "run", lambda feeds, outputs=None: (rows.append(len(feeds["x"])),
                                                                     real_run(feeds, outputs))[1])
    got = session.predict(x, batch_size=100)
    assert rows == [100] * 10 + [3]
    assert got.shape == (1003, 4) and got.dtype == np.float32
    np.testing.assert_allclose(got, relu_mlp_reference(model, x), rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(session.predict(x, batch_size=100, progress=True), got)  # with a tqdm bar


def test_predict_reads_a_memory_mapped_file_chunk_by_chunk(session, rng, tmp_path):
    x = rng.standard_normal((500, 16))  # float64 on disk: each chunk is cast on the way
    np.save(tmp_path / "x.npy", x)
    mapped = np.load(tmp_path / "x.npy", mmap_mode="r")
    np.testing.assert_array_equal(session.predict(mapped, batch_size=64),
                                  session.predict(x.astype(np.float32), batch_size=64))


def test_predict_takes_a_dict_for_several_inputs_and_a_named_output(rng):
    session = load(add_model(), device="cpu")
    a, b = rng.standard_normal((2, 37, 5)).astype(np.float32)
    np.testing.assert_array_equal(session.predict({"a": a, "b": b}, batch_size=8), a + b)
    np.testing.assert_array_equal(session.predict({"a": a, "b": b}, batch_size=8, output="scale"), 2 * a)
    with pytest.raises(InputError, match="predict\\(\\) needs a model with one input or a dict of inputs; "
                                         "this one has 2: a, b"):
        session.predict(a)
    with pytest.raises(InputError, match="inputs must have equally many rows to be chunked; got a: 37, b: 36"):
        session.predict({"a": a, "b": b[:36]}, batch_size=8)
    with pytest.raises(InputError, match="unknown output 'nope'; the model's outputs are: z, scale"):
        session.predict({"a": a, "b": b}, output="nope")
    with pytest.raises(InputError, match="batch_size must be a positive integer; got 0"):
        session.predict({"a": a, "b": b}, batch_size=0)


def test_session_options_reach_onnx_runtime_and_keep_results(model, rng):
    x = rng.standard_normal((64, 16)).astype(np.float32)
    tuned = load(model, device="cpu", threads=1, inter_op_threads=1, optimization="disable")
    options = tuned._sess.get_session_options()
    assert options.intra_op_num_threads == 1 and options.inter_op_num_threads == 1
    assert str(options.graph_optimization_level).endswith("ORT_DISABLE_ALL")
    default = load(model, device="cpu")
    assert str(default._sess.get_session_options().graph_optimization_level).endswith("ORT_ENABLE_ALL")
    np.testing.assert_allclose(tuned.predict(x), default.predict(x), rtol=1e-5, atol=1e-6)
    with pytest.raises(ConfigError, match="optimization must be one of disable, basic, extended, all; got 'max'"):
        load(model, device="cpu", optimization="max")


def test_warmup_runs_zeros_of_consistent_shapes(model, monkeypatch):
    session = load(add_model(), device="cpu")
    seen = []
    real = session._sess.run
    monkeypatch.setattr(session._sess, "run", lambda names, feeds: (seen.append(
        {k: v.shape for k, v in feeds.items()}), real(names, feeds))[1])
    assert session.warmup(batch_size=3, runs=2) > 0
    assert seen == [{"a": (3, 1), "b": (3, 1)}] * 2  # T is one symbol, so both inputs get the same size
    assert load(model, device="cpu", warmup=True).predict(np.zeros((1, 16), np.float32)).shape == (1, 4)


def test_warmup_failure_is_a_model_error():
    graph = helper.make_graph(  # Reshape to [2, 3] fails for the one-element zeros warm-up feeds
        [helper.make_node("Reshape", ["x", "shape"], ["y"])], "reshape",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])],
        [numpy_helper.from_array(np.array([2, 3], np.int64), "shape")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    with pytest.raises(ModelError, match=r"warm-up on zeros shaped \{'x': \[1\]\} failed"):
        load(model, device="cpu", warmup=True)


def test_labels_from_metadata_name_the_predicted_classes(session, model, rng):
    assert session.labels == ["ant", "bee", "cat", "dog"]
    x = rng.standard_normal((50, 16)).astype(np.float32)
    want = np.array(["ant", "bee", "cat", "dog"])[relu_mlp_reference(model, x).argmax(1)]
    np.testing.assert_array_equal(session.predict_labels(x, batch_size=16), want)
    np.testing.assert_array_equal(session.label_names([[3, 0]]), [["dog", "ant"]])
    with pytest.raises(InputError, match="class index 4 is outside the model's 4 labels"):
        session.label_names([4])
    plain = mlp(16, [12], 3)
    prop = plain.metadata_props.add()
    prop.key, prop.value = "labels", "red, green,blue"  # a foreign model's plain property
    assert load(plain, device="cpu").labels == ["red", "green", "blue"]
    with pytest.raises(ModelError, match="the model's metadata holds no class labels"):
        load(mlp(16, [12], 3), device="cpu").predict_labels(x)


def test_run_on_device_keeps_outputs_on_the_device_and_chains_calls(session, model, rng):
    x = rng.standard_normal((9, 16)).astype(np.float32)
    on_device = session.to_device(x)
    assert isinstance(on_device, DeviceArray) and on_device.device == "cpu"
    assert on_device.shape == (9, 16) and on_device.dtype == np.float32
    out = session.run_on_device({"x": on_device})
    logits = out["logits"]
    assert isinstance(logits, DeviceArray) and logits.shape == (9, 4)
    np.testing.assert_array_equal(logits.numpy(), session.run({"x": x})["logits"])
    np.testing.assert_array_equal(session.run({"x": on_device})["logits"], logits.numpy())  # run() takes them too
    # the output stays a device tensor and feeds the next model without a host round trip
    doubler = load(add_model(), device="cpu")
    chained = doubler.run_on_device({"a": logits, "b": logits}, ["z"])["z"]
    np.testing.assert_allclose(chained.numpy(), 2 * relu_mlp_reference(model, x), rtol=1e-4, atol=1e-5)


def test_run_on_device_checks_device_arrays_without_casting(session):
    with pytest.raises(InputError, match="input 'x' expects dtype float32, got a DeviceArray of float64; "
                                         "DeviceArrays are not cast"):
        session.run_on_device({"x": session.to_device(np.zeros((2, 16)))})
    with pytest.raises(InputError, match="input 'x' expects size 16 on axis 1 float32 \\[N, 16\\], got shape \\[2, 15\\]"):
        session.run_on_device({"x": session.to_device(np.zeros((2, 15), np.float32))})

    class ElsewhereValue:  # what an OrtValue on a GPU reports, for a session on the CPU
        def shape(self):
            return [2, 16]

        def data_type(self):
            return "tensor(float)"

        def device_name(self):
            return "Cuda"

    with pytest.raises(InputError, match="input 'x' is a DeviceArray on cuda; this session runs on cpu"):
        session.run_on_device({"x": DeviceArray(ElsewhereValue())})


def test_decode_translates_like_a_step_by_step_greedy_loop(rng):
    session = load(seq2seq(12, 11, 8, 16, attention="dot", seed=4), device="cpu")
    src = rng.integers(3, 12, (3, 5))
    tokens, attention = session.decode(src, max_len=6)
    assert tokens.shape[0] == 3 and attention.shape == tokens.shape + (5,)
    for row, sequence in enumerate(src):  # independent reference: re-run the prefix, take the argmax
        prefix = [1]  # BOS
        for _ in range(6):
            logits = session.run({"src": sequence[None], "decoder_input": np.array([prefix])})["logits"][0, -1]
            logits[:2] = -np.inf  # PAD and BOS are never emitted
            prefix.append(int(np.argmax(logits)))
            if prefix[-1] == 2:  # EOS
                break
        assert [t for t in tokens[row].tolist() if t != 0] == prefix[1:]
    with pytest.raises(ModelError, match="decoding needs an encoder-decoder"):
        load(mlp(4, [3], 2), device="cpu").decode(np.ones((1, 3), np.int64))


def test_many_threads_share_one_session(session, rng):
    inputs = [rng.standard_normal((int(rng.integers(1, 40)), 16)).astype(np.float32) for _ in range(24)]
    expected = [session.run({"x": x})["logits"] for x in inputs]
    results: dict = {}
    errors = []

    def work(i):
        try:
            for round_ in range(15):
                x = inputs[i]
                got = (session.run({"x": x})["logits"] if round_ % 3 == 0
                       else session.predict(x, batch_size=7) if round_ % 3 == 1
                       else session.run_on_device({"x": session.to_device(x)})["logits"].numpy())
                results.setdefault(i, []).append(got)
        except Exception as exc:  # noqa: BLE001
            errors.append(repr(exc))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(inputs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert errors == []
    for i, want in enumerate(expected):
        assert len(results[i]) == 15
        for got in results[i]:
            np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def test_run_on_device_keeps_string_outputs_on_the_host_and_refuses_string_inputs():
    def one_node(op, in_type, out_type, **attrs):
        graph = helper.make_graph([helper.make_node(op, ["a"], ["b"], **attrs)], op,
                                  [helper.make_tensor_value_info("a", in_type, ["N"])],
                                  [helper.make_tensor_value_info("b", out_type, ["N"])])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        model.ir_version = 8
        return load(model, device="cpu")

    to_text = one_node("Cast", TensorProto.FLOAT, TensorProto.STRING, to=TensorProto.STRING)
    out = to_text.run_on_device({"a": np.array([1.5, -2.0], np.float32)})["b"]
    assert out.device == "cpu" and out.numpy().tolist() == ["1.5", "-2"]
    echo = one_node("Identity", TensorProto.STRING, TensorProto.STRING)
    with pytest.raises(InputError, match="input 'a' holds strings, which ONNX Runtime cannot bind; use run\\(\\)"):
        echo.run_on_device({"a": np.array(["x"])})
    assert echo.run({"a": np.array(["x"])})["b"].tolist() == ["x"]
