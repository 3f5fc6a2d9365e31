"""``lstm(..., impl="unrolled")``: the same function and gradients as the ``LSTM``-node build and as
PyTorch's ``nn.LSTM`` on the same weights, for every form the builder offers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from onnx import numpy_helper

from onnxforge.graphs import lstm
from onnxforge.graphs.lstm_gates import onnx_to_torch
from onnxforge.runtime import Trainer, load
from onnxforge.runtime.errors import ConfigError

T = 6
FORMS = {
    "features": dict(inputs=5, hidden=8, classes=4),
    "two-layers": dict(inputs=5, hidden=8, layers=2, classes=4),
    "tokens-tagger": dict(vocab=12, embed=6, hidden=8, classes=5, head="tagger"),
    "bidirectional": dict(inputs=5, hidden=8, classes=4, bidirectional=True),
}


def _data(form: dict, n: int, rng):
    if form.get("vocab"):
        x = rng.integers(0, form["vocab"], (n, T)).astype(np.int64)
    else:
        x = rng.standard_normal((n, T, form["inputs"])).astype(np.float32)
    if form.get("head") == "tagger":
        y = rng.integers(1, form["classes"], (n, T)).astype(np.int64)
    else:
        y = rng.integers(0, form["classes"], n).astype(np.int64)
    return x, y


def _weights(model) -> dict:
    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}


@pytest.mark.parametrize("name", sorted(FORMS))
def test_unrolled_equals_lstm_nodes_forward(name):
    form = FORMS[name]
    node = lstm(**form, seed=3)
    unrolled = lstm(**form, seed=3, impl="unrolled", steps=T)
    w_node, w_unrolled = _weights(node), _weights(unrolled)
    assert set(w_node) == set(w_unrolled)  # same parameters, drawn alike
    for k in w_node:
        np.testing.assert_array_equal(w_node[k], w_unrolled[k])
    assert not [n for n in unrolled.graph.node if n.op_type == "LSTM"]
    x, _ = _data(form, 7, np.random.default_rng(0))
    a = load(node, "cpu").run({"x": x})["logits"]
    b = load(unrolled, "cpu").run({"x": x})["logits"]
    np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)


def test_unrolled_matches_torch_forward_and_gradients():
    """Outputs and the gradient of every parameter against nn.LSTM (gate order i, o, f, c -> i, f, g, o)."""
    H, I, C = 8, 5, 4  # noqa: E741 - the hidden, input and class sizes
    model = lstm(I, hidden=H, classes=C, seed=1, impl="unrolled", steps=T)
    w = _weights(model)
    def gates(a):
        return torch.tensor(onnx_to_torch(a))

    net = torch.nn.LSTM(I, H, batch_first=True)
    fc = torch.nn.Linear(H, C)
    with torch.no_grad():
        net.weight_ih_l0.copy_(gates(w["lstm1.W"][0]))
        net.weight_hh_l0.copy_(gates(w["lstm1.R"][0]))
        net.bias_ih_l0.copy_(gates(w["lstm1.B"][0][: 4 * H]))
        net.bias_hh_l0.copy_(gates(w["lstm1.B"][0][4 * H:]))
        fc.weight.copy_(torch.tensor(w["fc.weight"]))
        fc.bias.copy_(torch.tensor(w["fc.bias"]))
    x, y = _data({"inputs": I, "classes": C}, 16, np.random.default_rng(2))
    _, (h, _) = net(torch.tensor(x))
    logits = fc(h[-1])
    np.testing.assert_allclose(load(model, "cpu").run({"x": x})["logits"], logits.detach().numpy(), rtol=1e-5, atol=1e-6)
    # one plain SGD step (lr 1) through the real Trainer: new weights = old - gradient
    torch.nn.functional.cross_entropy(logits, torch.tensor(y)).backward()
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(model, Path(tmp) / "run", optimizer="sgd", lr=1.0, device="cpu", progress=False)
        trainer.fit((x, y), epochs=1, batch_size=16, shuffle=False)
        after = trainer.parameters()
    grad_w = (w["lstm1.W"][0] - after["lstm1.W"][0])
    grad_r = (w["lstm1.R"][0] - after["lstm1.R"][0])
    np.testing.assert_allclose(gates(grad_w).numpy(), net.weight_ih_l0.grad.numpy(), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(gates(grad_r).numpy(), net.weight_hh_l0.grad.numpy(), rtol=1e-4, atol=1e-6)
    grad_b = w["lstm1.B"][0] - after["lstm1.B"][0]
    np.testing.assert_allclose(gates(grad_b[: 4 * H]).numpy(), net.bias_ih_l0.grad.numpy(), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(w["fc.weight"] - after["fc.weight"], fc.weight.grad.numpy(), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name", ["two-layers", "tokens-tagger", "bidirectional"])
def test_unrolled_trains_like_lstm_nodes(tmp_path, name):
    """Three AdamW steps: both builds reach the same weights (their gradients agree)."""
    form = FORMS[name]
    x, y = _data(form, 24, np.random.default_rng(4))
    results = []
    for impl in ("node", "unrolled"):
        model = lstm(**form, seed=5, impl=impl, steps=T)
        trainer = Trainer(model, tmp_path / impl, lr=1e-2, device="cpu", progress=False)
        trainer.fit((x, y), epochs=1, batch_size=8, shuffle=False)
        results.append(trainer.parameters())
    for k in results[0]:
        np.testing.assert_allclose(results[1][k], results[0][k], rtol=1e-4, atol=1e-5, err_msg=k)


def test_unrolled_needs_steps_and_a_known_impl():
    with pytest.raises(ConfigError, match="impl='unrolled' needs steps"):
        lstm(4, impl="unrolled")
    with pytest.raises(ConfigError, match="impl must be one of node, unrolled; got 'scan'"):
        lstm(4, impl="scan", steps=3)
    with pytest.raises(ConfigError, match="steps must be a positive integer"):
        lstm(4, impl="unrolled", steps=0)


def test_fixed_steps_are_in_the_input_shape():
    model = lstm(4, hidden=3, impl="unrolled", steps=T)
    dims = [d.dim_value or d.dim_param for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["N", T, 4]


@pytest.mark.parametrize("impl", ["node", "unrolled"])
@pytest.mark.parametrize("head", ["sequence", "tagger"])
def test_bidirectional_is_right_at_every_optimisation_level(impl, head):
    """ONNX Runtime's extended optimisations once turned the time reversal into a wrong Slice."""
    from onnx.reference import ReferenceEvaluator

    from onnxforge.runtime.ort.distribution import ort

    form = {**FORMS["bidirectional"], "head": head}
    model = lstm(**form, seed=3, **({"impl": impl, "steps": T} if impl == "unrolled" else {}))
    x, _ = _data(form, 5, np.random.default_rng(1))
    expected = ReferenceEvaluator(model).run(None, {"x": x})[0]
    rt = ort()
    for level in ("ORT_DISABLE_ALL", "ORT_ENABLE_BASIC", "ORT_ENABLE_EXTENDED", "ORT_ENABLE_ALL"):
        options = rt.SessionOptions()
        options.graph_optimization_level = getattr(rt.GraphOptimizationLevel, level)
        got = rt.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6, err_msg=level)
