"""The built-in pack: values against PyTorch, gradients against central differences of a numpy
loss (through the trainer's real SGD step), and the Python-kernel LogGamma."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from onnx import numpy_helper

from onnxforge import plugins
from onnxforge.graphs import GraphBuilder, float_input, mlp
from onnxforge.runtime.modelio.card import ModelCard
from onnxforge.runtime import Trainer, load

_erf = np.vectorize(math.erf)

# name -> (numpy reference in float64, torch reference)
REFERENCES = {
    "swish": (lambda x: x / (1 + np.exp(-x)), F.silu),
    "gelu": (lambda x: 0.5 * x * (1 + _erf(x / math.sqrt(2))), F.gelu),
    "mish": (lambda x: x * np.tanh(np.logaddexp(0, x)), F.mish),
    "softplus": (lambda x: np.logaddexp(0, x), F.softplus),
    "elu": (lambda x: np.where(x > 0, x, np.expm1(np.minimum(x, 0))), F.elu),
}


def single_op_model(name: str, **attrs):
    op = plugins.find_op(name)
    b = GraphBuilder()
    b.node(op.name, ["x"], ["y"], name="act", domain=op.domain, **{**op.attributes, **attrs})
    b.functions.append(op.function_proto())
    b.opsets[op.domain] = op.version
    return b.model("act", [float_input("x", ["N"])], [float_input("y", ["N"])], ModelCard(output="y"))


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_function_ops_match_pytorch_without_overflow(name):
    x = np.concatenate([np.linspace(-8, 8, 161), [-100.0, -80.0, 80.0, 100.0]]).astype(np.float32)
    got = load(single_op_model(name)).run({"x": x})["y"]
    want = REFERENCES[name][1](torch.from_numpy(x)).numpy()
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_elu_alpha_attribute_reaches_the_inlined_body():
    x = np.linspace(-4, 4, 33).astype(np.float32)
    model = single_op_model("elu", alpha=0.3)
    np.testing.assert_allclose(load(model).run({"x": x})["y"], F.elu(torch.from_numpy(x), alpha=0.3).numpy(),
                               rtol=1e-5, atol=1e-6)
    inlined = plugins.prepare_training(model)
    assert not inlined.functions and all(n.domain == "" for n in inlined.graph.node)


def _numpy_loss(params: dict, x: np.ndarray, y: np.ndarray, act) -> float:
    h = act(x @ params["fc1.weight"].T + params["fc1.bias"])
    z = h @ params["fc2.weight"].T + params["fc2.bias"]
    z = z - z.max(1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(1, keepdims=True))
    return float(-logp[np.arange(len(y)), y].mean())


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_gradients_of_a_plugin_mlp_agree_with_finite_differences(name, tmp_path):
    """One SGD step of the real trainer (lr 1) gives -gradient; compare with central differences of
    the same loss computed in float64 numpy."""
    rng = np.random.default_rng(7)
    x = rng.standard_normal((16, 6)).astype(np.float32)
    y = rng.integers(0, 3, 16)
    model = mlp(6, [5], 3, activation=name, seed=3)
    before = {t.name: numpy_helper.to_array(t).astype(np.float64) for t in model.graph.initializer}
    trainer = Trainer(model, tmp_path / "run", optimizer="sgd", lr=1.0, progress=False, device="cpu")
    trainer.fit((x, y), epochs=1, batch_size=16, shuffle=False, overwrite=True)
    after = trainer.parameters()
    act = REFERENCES[name][0]
    eps = 1e-5
    for pname, w0 in before.items():
        grad = w0 - after[pname].astype(np.float64)  # lr = 1
        fd = np.zeros_like(w0)
        for i in np.ndindex(w0.shape):
            plus, minus = dict(before), dict(before)
            plus[pname], minus[pname] = w0.copy(), w0.copy()
            plus[pname][i] += eps
            minus[pname][i] -= eps
            fd[i] = (_numpy_loss(plus, x, y, act) - _numpy_loss(minus, x, y, act)) / (2 * eps)
        assert np.abs(fd).max() > 1e-4, pname  # the check is not vacuous
        np.testing.assert_allclose(grad, fd, rtol=1e-3, atol=2e-6, err_msg=f"{name}: {pname}")


@pytest.mark.parametrize("name", ["mish", "softplus", "elu"])
def test_training_stays_finite_at_extreme_pre_activations(name, tmp_path):
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((32, 6)) * 300).astype(np.float32)
    y = rng.integers(0, 3, 32)
    trainer = Trainer(mlp(6, [8], 3, activation=name), tmp_path / "run", optimizer="sgd", lr=1e-4, progress=False)
    trainer.fit((x, y), epochs=2, batch_size=16, overwrite=True)
    assert all(np.isfinite(v).all() for v in trainer.parameters().values())


def test_log_gamma_python_kernel_serves_like_torch_lgamma():
    b = GraphBuilder()
    b.node("LogGamma", ["x"], ["y"], name="lg", domain="onnxforge")
    b.opsets["onnxforge"] = 1
    model = b.model("lg", [float_input("x", ["N"])], [float_input("y", ["N"])], ModelCard(output="y"))
    assert "python" in plugins.find_op("LogGamma").kinds
    x = np.array([0.1, 0.5, 1.0, 1.5, 2.0, 3.7, 10.0, 30.0, -0.5, -2.5, 0.0, -1.0], np.float32)
    session = load(model)
    got = session.run({"x": x})["y"]
    want = torch.lgamma(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert np.isinf(got[-2:]).all()
    batch = np.random.default_rng(0).uniform(0.1, 20, (3, 1000)).astype(np.float32).reshape(-1)
    np.testing.assert_allclose(session.run({"x": batch})["y"], torch.lgamma(torch.from_numpy(batch)).numpy(),
                               rtol=1e-5, atol=1e-5)
