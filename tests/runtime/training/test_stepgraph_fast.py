"""The step graph's faster formulations equal the plain ones: packed parameters read as views of
the flat buffer (no Split) and SGD's update folded into the weight gradient's Gemm give the same
weights, losses and checkpoints as the Split-and-Sub step (tests for runtime/training/stepgraph)."""

from __future__ import annotations

import numpy as np
import pytest

from onnxforge.graphs import convnet, mlp
from onnxforge.runtime.training.stepgraph import build_step, moment_names
from onnxforge.runtime.training.stepgraph.pack import PARAMS
from onnxforge.runtime.training.stepgraph.runner import StepRunner

from _stepgraph_values import split_parameters, start_values


def _cases():
    return {"mlp": (mlp(12, [9], 4, seed=1), (5, 12)),
            "convnet-bn": (convnet((1, 8, 8), channels=(4, 6), classes=4, batchnorm=True, seed=2), (5, 1, 8, 8))}


def _graph(model, shape, optimizer, **kw):
    trainable, buffers = split_parameters(model)
    return build_step(model, output=model.graph.output[0].name, loss="cross-entropy", optimizer=optimizer,
                      trainable=trainable, buffers=buffers, feed_shapes={"x": shape}, weight_decay=0.01, **kw)


@pytest.mark.parametrize("case", list(_cases()))
@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_parameters_read_as_views_of_the_flat_buffer_train_as_the_split_step_does(case, optimizer):
    model, shape = _cases()[case]
    graphs = {views: _graph(model, shape, optimizer, views=views) for views in (False, True)}
    ops = {views: [n.op_type for n in g.model.graph.node] for views, g in graphs.items()}
    assert "Split" in ops[False] and "Split" not in ops[True] and PARAMS in graphs[True].state
    assert graphs[True].names() == graphs[False].names()
    rng = np.random.default_rng(0)
    runners = {v: StepRunner(g, start_values(model, g)) for v, g in graphs.items()}
    for _ in range(4):
        x, y = rng.standard_normal(shape).astype(np.float32), rng.integers(0, 4, shape[0])
        losses = {v: r.step([x], y, 0.05) for v, r in runners.items()}
        assert losses[True] == pytest.approx(losses[False], rel=1e-6)
    a, b = runners[True].state(), runners[False].state()
    for name in b:
        np.testing.assert_allclose(a[name], b[name], rtol=1e-6, atol=1e-7, err_msg=name)


def test_load_writes_the_viewed_parameters_through_the_flat_buffer():
    model, shape = _cases()["mlp"]
    graph = _graph(model, shape, "adamw", views=True)
    start = start_values(model, graph)
    runner = StepRunner(graph, start)
    x, y = np.ones(shape, np.float32), np.zeros(shape[0], np.int64)
    runner.step([x], y, 0.1)
    runner.load(start, steps=0)  # back to the start: the next step is the first step again
    for name, value in runner.state().items():
        np.testing.assert_array_equal(value, start[name], err_msg=name)
    fresh = StepRunner(graph, start)
    assert runner.step([x], y, 0.1) == fresh.step([x], y, 0.1)
    for name, value in fresh.state().items():
        np.testing.assert_array_equal(runner.state()[name], value, err_msg=name)
    assert set(runner.state()) == {n for p in split_parameters(model)[0] for n in [p, *moment_names("adamw", p)]}


def _numpy_sgd(params, x, y, lr):
    """One SGD step of a 2-layer ReLU MLP with mean cross-entropy, in float64."""
    w1, b1, w2, b2 = (params[k].astype(np.float64) for k in ("fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"))
    h = np.maximum(x @ w1.T + b1, 0)
    z = h @ w2.T + b2
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    dz = (p - np.eye(z.shape[1])[y]) / len(y)
    dh = (dz @ w2) * (h > 0)
    grads = {"fc1.weight": dh.T @ x, "fc1.bias": dh.sum(0), "fc2.weight": dz.T @ h, "fc2.bias": dz.sum(0)}
    return {k: params[k] - lr * g for k, g in grads.items()}


def test_sgd_updates_of_large_weights_fold_into_their_gradient_gemm_and_equal_numpy():
    from onnxforge.runtime.training.stepgraph.pack import PACK_MAX_ELEMENTS

    model = mlp(300, [256], 3, seed=6)  # fc1.weight: 76800 elements, its own input (not packed)
    assert 300 * 256 > PACK_MAX_ELEMENTS
    graph = _graph(model, (8, 300), "sgd", views=True)
    writers = {o: n for n in graph.model.graph.node for o in n.output}
    folded = writers["new/fc1.weight"]
    assert folded.op_type == "Gemm" and len(folded.input) == 3 and folded.input[2] == "fc1.weight"
    assert writers["new/" + PARAMS].op_type == "Sub"  # the packed rest: one Sub
    runner = StepRunner(graph, start_values(model, graph))
    ref = {k: v.astype(np.float64) for k, v in start_values(model, graph).items()}
    rng = np.random.default_rng(7)
    for lr in (0.5, 0.3, 0.1):
        x, y = rng.standard_normal((8, 300)).astype(np.float32), rng.integers(0, 3, 8)
        runner.step([x], y, lr)
        ref = _numpy_sgd(ref, x.astype(np.float64), y, lr)
    got = runner.state()
    for name, value in ref.items():
        assert not np.allclose(value, start_values(model, graph)[name]), name
        np.testing.assert_allclose(got[name], value, rtol=0, atol=2e-6, err_msg=name)


def test_scaled_moments_round_trip_exactly_through_their_named_values():
    """AdamW's moments are carried divided by 1 - beta; named (checkpoints) in float64 they give
    back the very carried buffer, so a resumed run is bit-exact (in float32 one value in eight
    came back one ulp off)."""
    model, shape = _cases()["mlp"]
    graph = _graph(model, shape, "adamw", views=True)
    rng = np.random.default_rng(3)
    packed = graph.pack(start_values(model, graph))
    carried = {k: rng.standard_normal(packed[k].shape).astype(np.float32) * 1e-3 for k in graph.state}
    again = graph.pack(graph.unpack(carried))
    for name in graph.state:
        np.testing.assert_array_equal(again[name], carried[name], err_msg=name)
