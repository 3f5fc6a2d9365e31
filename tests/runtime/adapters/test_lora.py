"""LoRA targets, the graph rewrites and the merge, against numpy on the same weights."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from _lora_models import classifier, forward, weights
from onnx.reference import ReferenceEvaluator

from onnxforge.runtime.adapters import LoRA, find_targets, merged, with_adapters
from onnxforge.runtime.adapters.lora import initial_adapters
from onnxforge.runtime.errors import ConfigError

X = np.random.default_rng(5).normal(size=(7, 8)).astype(np.float32)


def _adapted(w: dict, adapters: dict, scale: float) -> dict:
    """The weights with scale * A @ B added in each weight's own layout (W2, W3 are [out, in])."""
    out = dict(w)
    for name in ("W1", "W2", "W3"):
        delta = scale * adapters[name + ".lora_A"].astype(np.float64) @ adapters[name + ".lora_B"]
        out[name] = w[name] + (delta if name == "W1" else delta.T)
    return out


def _random_adapters(rank: int, seed: int = 3) -> dict:
    rng = np.random.default_rng(seed)
    shapes = {"W1": (8, 16), "W2": (16, 16), "W3": (16, 3)}
    return {f"{n}.lora_{ab}": rng.normal(0, 0.5, (k, rank) if ab == "A" else (rank, m)).astype(np.float32)
            for n, (k, m) in shapes.items() for ab in "AB"}


def test_targets_direct_through_transpose_and_gemm():
    targets = {t.weight: t for t in find_targets(classifier())}
    assert list(targets) == ["W1", "W2", "W3"]  # biases (1-D) are not targets
    assert (targets["W1"].transposed, targets["W1"].k, targets["W1"].n) == (False, 8, 16)
    assert (targets["W2"].transposed, targets["W2"].k, targets["W2"].n) == (True, 16, 16)
    assert (targets["W3"].transposed, targets["W3"].k, targets["W3"].n) == (True, 16, 3)


def test_glob_picks_and_refuses():
    assert [t.weight for t in find_targets(classifier(), ["W[12]"])] == ["W1", "W2"]
    with pytest.raises(ConfigError, match=r"'nope\*' matches no weight; .*W1, W2, W3"):
        find_targets(classifier(), ["nope*"])
    with pytest.raises(ConfigError, match=r"'b1'.*not a 2-D float32 weight that a MatMul or Gemm"):
        find_targets(classifier(), ["b1"])


def test_a_weight_read_elsewhere_is_not_adapted():
    model = classifier(tied=True)
    assert [t.weight for t in find_targets(model)] == ["W2", "W3"]
    with pytest.raises(ConfigError, match="'W1'.*ReduceSum node reads it too"):
        find_targets(model, ["W1"])


def test_settings_are_checked():
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ConfigError, match="rank must be a positive integer"):
            LoRA(bad)
    with pytest.raises(ConfigError, match="alpha must be a positive number"):
        LoRA(4, alpha=-2)
    assert LoRA(4).scale == 1.0 and LoRA(4, alpha=16).scale == 4.0
    assert LoRA.of(LoRA(8, 4.0, "W*").record()) == LoRA(8, 4.0, ("W*",))


def test_initial_adapters_are_seeded_normal_and_zero():
    targets = find_targets(classifier())
    a = initial_adapters(targets, 4, seed=7)
    assert a == {} or all(np.array_equal(v, initial_adapters(targets, 4, seed=7)[k]) for k, v in a.items())
    assert not np.array_equal(a["W1.lora_A"], initial_adapters(targets, 4, seed=8)["W1.lora_A"])
    assert all(not v.any() for k, v in a.items() if k.endswith("lora_B"))
    big = initial_adapters(find_targets(classifier(), ["W2"]), 64, seed=0)["W2.lora_A"]
    assert abs(big.var() - 1 / 64) < 0.003 and big.shape == (16, 64)  # N(0, 1/rank)


@pytest.mark.parametrize("alpha", [1.0, 0.5])
def test_training_form_equals_numpy(alpha):
    model = classifier(gemm_alpha=alpha)
    adapters, scale = _random_adapters(3), 2.5
    rewritten = with_adapters(model, find_targets(model), scale=scale, values=adapters)
    got = ReferenceEvaluator(rewritten).run(None, {"x": X})[0]
    want = forward(_adapted(weights(model), adapters, scale), X.astype(np.float64), alpha)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_serving_form_without_and_with_an_adapter():
    model = classifier(gemm_alpha=0.5)
    adapters = _random_adapters(2)
    served = with_adapters(model, find_targets(model), as_inputs=True)
    session = ort.InferenceSession(served.SerializeToString())
    assert [i.name for i in session.get_inputs()] == ["x"]  # adapters are overridable inputs
    base = forward(weights(model), X.astype(np.float64), 0.5)
    np.testing.assert_allclose(session.run(None, {"x": X})[0], base, rtol=1e-5, atol=1e-5)
    adapted = forward(_adapted(weights(model), adapters, 1.0), X.astype(np.float64), 0.5)
    np.testing.assert_allclose(session.run(None, {"x": X, **adapters})[0], adapted, rtol=1e-5, atol=1e-5)
    # the merged model computes the same, and keeps every other initialiser bit for bit
    plain = merged(model, find_targets(model), adapters)
    np.testing.assert_allclose(ReferenceEvaluator(plain).run(None, {"x": X})[0], adapted, rtol=1e-5, atol=1e-5)
    before, after = weights(model), weights(plain)
    assert all(np.array_equal(before[k], after[k]) for k in ("b1", "b2", "b3"))
    np.testing.assert_allclose(after["W2"], _adapted(before, adapters, 1.0)["W2"], rtol=1e-6, atol=1e-6)
    assert [o.name for o in plain.graph.output] == ["logits"] and [i.name for i in plain.graph.input] == ["x"]
