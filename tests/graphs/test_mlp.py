from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import numpy_helper
from onnx.reference import ReferenceEvaluator

from onnxforge.graphs import mlp
from onnxforge.runtime import ConfigError, load
from onnxforge.runtime.modelio.files import get_metadata


def numpy_forward(model, x, act=lambda z: np.maximum(z, 0)):
    p = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    layers = sorted({n.split(".")[0] for n in p if n.startswith("fc")}, key=lambda s: int(s[2:]))
    h = x
    for i, name in enumerate(layers):
        h = h @ p[f"{name}.weight"].T + p[f"{name}.bias"]
        if i < len(layers) - 1:
            h = act(h)
    return h


def test_mlp_is_a_valid_standard_model():
    model = mlp(64, [128, 64], 10, dropout=0.1)
    onnx.checker.check_model(model, full_check=True)
    names = [t.name for t in model.graph.initializer]
    assert [n for n in names if n.startswith("fc")] == [
        "fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias", "fc3.weight", "fc3.bias"]
    shapes = {t.name: list(t.dims) for t in model.graph.initializer}
    assert shapes["fc1.weight"] == [128, 64] and shapes["fc3.weight"] == [10, 64]
    dim0 = model.graph.input[0].type.tensor_type.shape.dim[0]
    assert dim0.dim_param == "N" and not dim0.HasField("dim_value")
    meta = get_metadata(model)
    assert meta["task"] == "classification" and meta["builder"] == "mlp" and meta["classes"] == 10
    assert meta["args"]["hidden"] == [128, 64] and meta["args"]["activation"] == "relu"


def test_mlp_forward_matches_numpy_and_reference_evaluator(rng):
    model = mlp(20, [16], 5, dropout=0.3, seed=4)
    x = rng.standard_normal((7, 20)).astype(np.float32)
    want = numpy_forward(model, x)
    got = load(model, device="cpu").run({"x": x})["logits"]
    np.testing.assert_allclose(got, want, atol=1e-5)
    ref = ReferenceEvaluator(model).run(None, {"x": x})[0]
    np.testing.assert_allclose(ref, want, atol=1e-5)


def test_initialisation_is_seeded_he_and_xavier():
    a, b, c = mlp(256, [512], 10, seed=1), mlp(256, [512], 10, seed=1), mlp(256, [512], 10, seed=2)
    wa = {t.name: numpy_helper.to_array(t) for t in a.graph.initializer}
    wb = {t.name: numpy_helper.to_array(t) for t in b.graph.initializer}
    wc = {t.name: numpy_helper.to_array(t) for t in c.graph.initializer}
    assert all(np.array_equal(wa[k], wb[k]) for k in wa)
    assert not np.array_equal(wa["fc1.weight"], wc["fc1.weight"])
    assert np.std(wa["fc1.weight"]) == pytest.approx(np.sqrt(2 / 256), rel=0.05)  # He for ReLU
    bound = np.sqrt(6 / (512 + 10))  # Xavier uniform for the output layer
    assert np.abs(wa["fc2.weight"]).max() <= bound and np.abs(wa["fc2.weight"]).max() > 0.9 * bound
    assert not wa["fc1.bias"].any()


@pytest.mark.parametrize("activation,fn", [("tanh", np.tanh), ("sigmoid", lambda z: 1 / (1 + np.exp(-z))),
                                           ("leaky_relu", lambda z: np.where(z > 0, z, 0.01 * z))])
def test_activations(rng, activation, fn):
    model = mlp(6, [5], 3, activation=activation)
    x = rng.standard_normal((4, 6)).astype(np.float32)
    np.testing.assert_allclose(load(model, device="cpu").run({"x": x})["logits"], numpy_forward(model, x, fn), atol=1e-5)


@pytest.mark.parametrize("kwargs,message", [
    ({"in_features": 0}, "in_features must be a positive integer; got 0"),
    ({"hidden": [8, -1]}, "hidden layer width must be a positive integer; got -1"),
    ({"dropout": 1.0}, "dropout must be a number in [0, 1); got 1.0"),
    ({"activation": "nope"}, "unknown activation 'nope'"),
    ({"task": "ranking"}, "task must be one of classification, regression; got 'ranking'"),
])
def test_bad_arguments_are_named(kwargs, message):
    args = {"in_features": 4, "hidden": [8], "out_features": 3, **kwargs}
    with pytest.raises(ConfigError) as info:
        mlp(args.pop("in_features"), args.pop("hidden"), args.pop("out_features"), **args)
    assert message in str(info.value)
