"""The standard-ONNX training step: only ai.onnx ops, one step on onnx.reference equals one step on
ONNX Runtime, ten SGD (and AdamW) steps equal PyTorch's, losses equal their numpy twins, dropout
masks are a function of (seed, step) only."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx.reference import ReferenceEvaluator

from onnxforge.graphs import convnet, lstm, mlp
from onnxforge.graphs.seq2seq import seq2seq
from onnxforge.runtime.inference.session import session_options
from onnxforge.runtime.ort.distribution import ort
from onnxforge.runtime.tasks.losses import numpy_loss
from onnxforge.runtime.training.stepgraph import LR, SEED, STEP, build_step, moment_names
from onnxforge.runtime.training.stepgraph.runner import StepRunner

from _stepgraph_values import split_parameters, start_values


def _initial(model, graph):
    """The step's state inputs (packed buffers where the graph packs)."""
    return graph.pack(start_values(model, graph))


def _new(graph, names, outs):
    """The updated carried values by name, from a step's outputs."""
    return graph.unpack({n[len("new/"):]: v for n, v in zip(names, outs) if n.startswith("new/")})


def _cases():
    rng = np.random.default_rng(0)
    x8 = rng.standard_normal((6, 1, 8, 8)).astype(np.float32)
    return {
        "mlp-dropout": (mlp(16, [12], 5, dropout=0.3, seed=1), {"x": rng.standard_normal((6, 16)).astype(np.float32)},
                        rng.integers(0, 5, 6), "cross-entropy"),
        "convnet-bn": (convnet((1, 8, 8), channels=(4, 6), classes=5, batchnorm=True, seed=2), {"x": x8},
                       rng.integers(0, 5, 6), "cross-entropy"),
        "lstm-node": (lstm(3, hidden=5, classes=4, seed=3), {"x": rng.standard_normal((6, 7, 3)).astype(np.float32)},
                      rng.integers(0, 4, 6), "cross-entropy"),
        "lstm-bidirectional-tagger": (lstm(3, hidden=4, classes=4, head="tagger", bidirectional=True, seed=4),
                                      {"x": rng.standard_normal((6, 5, 3)).astype(np.float32)},
                                      rng.integers(0, 4, (6, 5)), "cross-entropy"),
        "mlp-mse": (mlp(5, [7], 3, seed=5), {"x": rng.standard_normal((6, 5)).astype(np.float32)},
                    rng.standard_normal((6, 3)).astype(np.float32), "mse"),
    }


@pytest.mark.parametrize("case", list(_cases()))
@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_one_step_on_the_reference_evaluator_equals_one_on_onnx_runtime(case, optimizer):
    model, feeds, targets, loss = _cases()[case]
    trainable, buffers = split_parameters(model)
    output = model.graph.output[0].name
    graph = build_step(model, output=output, loss=loss, optimizer=optimizer, trainable=trainable, buffers=buffers,
                       feed_shapes={k: v.shape for k, v in feeds.items()}, weight_decay=0.01)
    m = graph.model
    onnx.checker.check_model(m, full_check=True)
    assert {n.domain for n in m.graph.node} <= {""}, "only ai.onnx ops"
    assert next(o.version for o in m.opset_import if o.domain == "") >= 17 and m.ir_version <= 10
    if "lstm" in case:  # the LSTM node trained by the differentiation package's rule (Scans)
        assert {"LSTM", "Scan"} <= {n.op_type for n in m.graph.node}
    run = {**feeds, graph.target: targets, LR: np.array(0.05, np.float32), STEP: np.array(3, np.float32),
           **graph.scalar_values(0.05, 3), **_initial(model, graph)}
    if graph.seeded:
        run[SEED] = np.array(12345, np.int64)
    names = [o.name for o in m.graph.output]
    ref = ReferenceEvaluator(m).run(None, run)
    got = ort().InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, run)
    for name, a, b in zip(names, ref, got):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-6, err_msg=name)
    # the loss is the documented one (numpy twin) on the forward's output, when nothing is random
    if not graph.seeded and not buffers:
        sess = ort().InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        out = sess.run([output], feeds)[0]
        assert got[0] == pytest.approx(numpy_loss(loss, out, targets), rel=1e-5)
    # every trainable parameter moved
    before, after = start_values(model, graph), _new(graph, names, got)
    for p in trainable:
        assert not np.array_equal(after[p], before[p]), p


def test_cross_entropy_ignores_padding_and_an_all_padding_batch_is_zero():
    model = seq2seq(9, 7, 4, 5, attention="dot", seed=0, max_len=6)
    trainable, _ = split_parameters(model)
    rng = np.random.default_rng(1)
    feeds = {"src": rng.integers(1, 9, (3, 5)), "decoder_input": rng.integers(1, 7, (3, 6))}
    inputs = [i.name for i in model.graph.input]
    feeds = {k: v for k, v in feeds.items() if k in inputs}
    targets = rng.integers(1, 7, (3, 6))
    targets[:, 4:] = 0
    graph = build_step(model, output="logits", loss="cross-entropy", optimizer="sgd", trainable=trainable,
                       feed_shapes={k: v.shape for k, v in feeds.items()}, ignore_index=0)
    sess = ort().InferenceSession(graph.model.SerializeToString(), providers=["CPUExecutionProvider"])
    base = {**feeds, LR: np.array(0.0, np.float32), STEP: np.array(1, np.float32), **_initial(model, graph)}
    logits = ort().InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(["logits"], feeds)[0]
    loss = sess.run(["loss"], {**base, graph.target: targets})[0]
    assert loss == pytest.approx(numpy_loss("cross-entropy", logits, targets, 0), rel=1e-5)
    outs = sess.run(None, {**base, LR: np.array(1.0, np.float32), graph.target: np.zeros_like(targets)})
    assert outs[0] == 0.0
    for name, new in zip(graph.state, outs[1:]):  # no targets: no gradient, nothing moves
        np.testing.assert_array_equal(new, base[name])
    assert set(graph.names()) == set(trainable)


def test_dropout_masks_depend_on_seed_and_step_only():
    model = mlp(32, [256], 4, dropout=0.25, seed=0)
    trainable, _ = split_parameters(model)
    graph = build_step(model, output="logits", loss="cross-entropy", optimizer="sgd", trainable=trainable,
                       with_output=True)
    x = np.ones((64, 32), np.float32)
    y = np.zeros(64, np.int64)

    def logits(seed, step):
        r = StepRunner(graph, start_values(model, graph), steps=step)
        r.seed(seed)
        r.step([x], y, 0.0)
        return r.outputs().numpy()

    a = logits(7, 0)
    np.testing.assert_array_equal(a, logits(7, 0))  # a new session, the same masks: resumes are exact
    assert not np.array_equal(a, logits(7, 1)) and not np.array_equal(a, logits(8, 0))
    # the hidden layer's kept fraction is close to 1 - ratio
    names = [n.output[0] for n in graph.model.graph.node if n.op_type == "GreaterOrEqual"]
    assert len(names) == 1
    probe = onnx.ModelProto()
    probe.CopyFrom(graph.model)
    probe.graph.output.append(onnx.helper.make_tensor_value_info(names[0], onnx.TensorProto.BOOL, None))
    run = {"x": x, "labels": y, LR: np.array(0.0, np.float32), STEP: np.array(5, np.float32),
           SEED: np.array(99, np.int64), **_initial(model, graph)}
    kept = ReferenceEvaluator(probe).run([names[0]], run)[0]
    assert kept.shape == (64, 256) and abs(kept.mean() - 0.75) < 0.01


def _ort_adamw(p, g, m, v, t, lr, wd, b1=0.9, b2=0.999, eps=1e-8):
    """ONNX Runtime training's AdamWOptimizer, adam_mode=1 (what onnxblock's AdamW builds), in float64."""
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * g * g
    p = p - lr * np.sqrt(1 - b2 ** t) / (1 - b1 ** t) * m / (np.sqrt(v) + eps)
    return p * (1 - lr * wd), m, v


def test_adamw_steps_equal_onnx_runtime_trainings_formula():
    model = mlp(6, [5], 3, seed=2)
    trainable, _ = split_parameters(model)
    graph = build_step(model, output="logits", loss="mse", optimizer="adamw", trainable=trainable, weight_decay=0.1,
                       with_output=False)
    state = _initial(model, graph)
    sess = ort().InferenceSession(graph.model.SerializeToString(), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(3)
    x, y = rng.standard_normal((4, 6)).astype(np.float32), rng.standard_normal((4, 3)).astype(np.float32)
    ref = {k: v.astype(np.float64) for k, v in start_values(model, graph).items()}
    for t in (1, 2, 3):
        # the gradient the step uses, from the autodiff gradient model of the same loss
        outs = sess.run(None, {"x": x, "target": y, LR: np.array(0.01, np.float32), STEP: np.array(t, np.float32),
                               **graph.scalar_values(0.01, t), **state})
        names = [o.name for o in graph.model.graph.output]
        new = _new(graph, names, outs)
        for p in trainable:
            m_name, v_name = moment_names("adamw", p)
            m_new = new[m_name].astype(np.float64)
            g = (m_new - 0.9 * ref[m_name]) / 0.1  # the gradient, recovered from the first moment
            ref[p], ref[m_name], ref[v_name] = _ort_adamw(ref[p], g, ref[m_name], ref[v_name], t, 0.01, 0.1)
            np.testing.assert_allclose(new[v_name], ref[v_name], rtol=1e-5, atol=1e-12)
            np.testing.assert_allclose(new[p], ref[p], rtol=0, atol=1e-6, err_msg=f"{p} step {t}")
        state = {n[len("new/"):]: v for n, v in zip(names, outs) if n.startswith("new/")}
        ref.update({k: v.astype(np.float64) for k, v in new.items()})


def test_packed_step_equals_the_unpacked_one_and_large_parameters_keep_their_own_buffer():
    from onnxforge.runtime.training.stepgraph.pack import PACK_MAX_ELEMENTS, PARAMS

    model = mlp(300, [256], 3, seed=6)  # fc1.weight: 76800 elements, above the packing limit
    trainable, _ = split_parameters(model)
    assert 300 * 256 > PACK_MAX_ELEMENTS
    graphs = {pack: build_step(model, output="logits", loss="cross-entropy", optimizer="adamw", trainable=trainable,
                               weight_decay=0.01, pack=pack) for pack in (True, False)}
    assert "fc1.weight" in graphs[True].state and PARAMS in graphs[True].state
    assert graphs[False].state == graphs[False].names() and PARAMS not in graphs[False].state
    assert set(graphs[True].names()) == set(graphs[False].names())
    rng = np.random.default_rng(5)
    runners = {pack: StepRunner(g, start_values(model, g)) for pack, g in graphs.items()}
    for _ in range(3):
        x, y = rng.standard_normal((8, 300)).astype(np.float32), rng.integers(0, 3, 8)
        losses = {pack: r.step([x], y, 1e-2) for pack, r in runners.items()}
        assert losses[True] == pytest.approx(losses[False], rel=1e-6)
    packed, plain = runners[True].state(), runners[False].state()
    for name, value in plain.items():
        np.testing.assert_allclose(packed[name], value, rtol=1e-6, atol=1e-7, err_msg=name)
    # the named state round-trips through the packed (and scaled) buffers
    again = graphs[True].unpack(graphs[True].pack(packed))
    for name, value in packed.items():
        np.testing.assert_allclose(again[name], value, rtol=1e-7, err_msg=name)


torch = pytest.importorskip("torch")


@pytest.mark.parametrize("optimizer", ["sgd"])
def test_ten_steps_equal_pytorch(optimizer):
    model = mlp(64, [128], 10, seed=3)
    trainable, _ = split_parameters(model)
    graph = build_step(model, output="logits", loss="cross-entropy", optimizer=optimizer, trainable=trainable,
                       weight_decay=0.01)
    init = start_values(model, graph)
    runner = StepRunner(graph, init, options=session_options(1))
    net = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10))
    with torch.no_grad():
        for layer, name in ((net[0], "fc1"), (net[2], "fc2")):
            layer.weight.copy_(torch.tensor(init[f"{name}.weight"]))
            layer.bias.copy_(torch.tensor(init[f"{name}.bias"]))
    lr = 0.1 if optimizer == "sgd" else 3e-3
    opt = torch.optim.SGD(net.parameters(), lr=lr) if optimizer == "sgd" else \
        torch.optim.AdamW(net.parameters(), lr=lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01)
    if optimizer == "sgd":  # the rate is folded into the loss's gradient: the update is one Sub
        assert [n.op_type for n in graph.model.graph.node if n.output[0].startswith("new/")] == ["Sub"] * len(graph.state)
    rng = np.random.default_rng(4)
    for step in range(10):
        x = rng.standard_normal((32, 64)).astype(np.float32)
        y = rng.integers(0, 10, 32)
        rate = lr * (1 - step / 20)  # a schedule: the rate is an input of every step
        for group in opt.param_groups:
            group["lr"] = rate
        loss = runner.step([x], y, rate)
        opt.zero_grad()
        ref = torch.nn.functional.cross_entropy(net(torch.from_numpy(x)), torch.from_numpy(y))
        ref.backward()
        opt.step()
        assert loss == pytest.approx(ref.item(), rel=1e-5, abs=1e-6)
    state = runner.state()
    assert runner.steps == 10 and set(state) == {n for p in trainable for n in [p, *moment_names(optimizer, p)]}
    for layer, name in ((net[0], "fc1"), (net[2], "fc2")):
        np.testing.assert_allclose(state[f"{name}.weight"], layer.weight.detach().numpy(), rtol=0, atol=1e-5)
        np.testing.assert_allclose(state[f"{name}.bias"], layer.bias.detach().numpy(), rtol=0, atol=1e-5)

