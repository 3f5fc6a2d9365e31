"""The LSTM builder against PyTorch's nn.LSTM on the same weights (ONNX gate order i, o, f, c;
PyTorch's i, f, g, o): forward pass, one SGD step through the real Trainer, training, and the
LSTM forms ONNX Runtime cannot train refused before any work."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import helper, numpy_helper

from onnxforge.graphs import lstm
from onnxforge.runtime import Trainer, load
from onnxforge.runtime.errors import ConfigError, NotTrainableError
from onnxforge.graphs.lstm_gates import onnx_to_torch
from onnxforge.runtime.modelio.files import get_metadata

gates_to_torch = onnx_to_torch  # [4H, ...] in ONNX gate order (i, o, f, c) as PyTorch's (i, f, g, o)


def onnx_weights(model) -> dict:
    return {t.name: numpy_helper.to_array(t).copy() for t in model.graph.initializer}


def to_torch_state(w: dict, args: dict) -> dict:
    """The model's weights as a state dict of TorchLSTMNet (PyTorch names, layouts, gate order)."""
    state = {}
    if args["vocab"]:
        state["embed.weight"] = w["embed.weight"]
    dirs = [("forward", ""), ("backward", "_reverse")] if args["bidirectional"] else [(None, "")]
    for layer in range(args["layers"]):
        for direction, suffix in dirs:
            prefix = f"lstm{layer + 1}" + (f".{direction}" if direction else "")
            H = args["hidden"]
            state[f"lstm.weight_ih_l{layer}{suffix}"] = gates_to_torch(w[f"{prefix}.W"][0])
            state[f"lstm.weight_hh_l{layer}{suffix}"] = gates_to_torch(w[f"{prefix}.R"][0])
            state[f"lstm.bias_ih_l{layer}{suffix}"] = gates_to_torch(w[f"{prefix}.B"][0][: 4 * H])
            state[f"lstm.bias_hh_l{layer}{suffix}"] = gates_to_torch(w[f"{prefix}.B"][0][4 * H :])
    state["fc.weight"], state["fc.bias"] = w["fc.weight"], w["fc.bias"]
    return {k: torch.tensor(v) for k, v in state.items()}


class TorchLSTMNet(torch.nn.Module):
    def __init__(self, args: dict):
        super().__init__()
        self.args = args
        size = args["embed"] if args["vocab"] else args["inputs"]
        if args["vocab"]:
            self.embed = torch.nn.Embedding(args["vocab"], args["embed"])
        self.lstm = torch.nn.LSTM(size, args["hidden"], num_layers=args["layers"], batch_first=True,
                                  bidirectional=args["bidirectional"])
        self.fc = torch.nn.Linear(args["hidden"] * (2 if args["bidirectional"] else 1), args["classes"])

    def forward(self, x):
        h = self.embed(x) if self.args["vocab"] else x
        seq, (h_n, _) = self.lstm(h)
        if self.args["head"] == "tagger":
            return self.fc(seq)
        last = torch.cat([h_n[-2], h_n[-1]], dim=-1) if self.args["bidirectional"] else h_n[-1]
        return self.fc(last)


def torch_net(model) -> TorchLSTMNet:
    args = get_metadata(model)["args"]
    net = TorchLSTMNet(args)
    net.load_state_dict(to_torch_state(onnx_weights(model), args))
    return net


CONFIGS = [
    dict(inputs=5, hidden=7, layers=1, classes=4, head="sequence"),
    dict(inputs=3, hidden=6, layers=2, classes=5, head="sequence"),
    dict(vocab=11, embed=4, hidden=5, layers=2, classes=6, head="tagger"),
    dict(inputs=4, hidden=5, layers=2, classes=3, head="sequence", bidirectional=True),
    dict(vocab=9, embed=3, hidden=4, layers=1, classes=5, head="tagger", bidirectional=True),
]


def batch(cfg, rng, n=6, steps=7):
    if cfg.get("vocab"):
        x = rng.integers(1, cfg["vocab"], (n, steps)).astype(np.int64)  # 0 is PAD (see test_lstm_padding.py)
    else:
        x = rng.standard_normal((n, steps, cfg["inputs"])).astype(np.float32)
    if cfg["head"] == "tagger":
        y = rng.integers(1, cfg["classes"], (n, steps)).astype(np.int64)
        y[:, -2:] = 0  # padding: ignored by the loss
    else:
        y = rng.integers(0, cfg["classes"], n).astype(np.int64)
    return x, y


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: "-".join(f"{k}{v}" for k, v in c.items()))
def test_forward_matches_torch(cfg, rng):
    model = lstm(**cfg, seed=4)
    x, _ = batch(cfg, rng)
    ours = load(model, device="cpu").run({"x": x})["logits"]
    with torch.no_grad():
        ref = torch_net(model)(torch.tensor(x)).numpy()
    assert ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref, atol=1e-5, rtol=0)


@pytest.mark.parametrize("cfg", CONFIGS[1:], ids=lambda c: "-".join(f"{k}{v}" for k, v in c.items()))
def test_one_sgd_step_matches_torch(tmp_path, cfg, rng):
    model = lstm(**cfg, seed=6)
    x, y = batch(cfg, rng, n=8)
    net = torch_net(model)
    lr = 0.5
    trainer = Trainer(model, tmp_path / "run", optimizer="sgd", lr=lr, device="cpu", progress=False)
    trainer.fit((x, y), epochs=1, batch_size=8, shuffle=False)
    assert trainer.step == 1

    logits = net(torch.tensor(x))
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, cfg["classes"]), torch.tensor(y).reshape(-1),
                                             ignore_index=0 if cfg["head"] == "tagger" else -100)
    loss.backward()
    with torch.no_grad():
        for p in net.parameters():
            p -= lr * p.grad
    before = to_torch_state(onnx_weights(model), get_metadata(model)["args"])
    after = to_torch_state(trainer.parameters(), get_metadata(model)["args"])
    reference = net.state_dict()
    assert set(after) == set(reference)
    for name, value in after.items():
        assert not torch.allclose(value, before[name]), f"{name} did not move"
        np.testing.assert_allclose(value.numpy(), reference[name].numpy(), atol=1e-5, rtol=0, err_msg=name)


def test_two_layer_lstm_trains(tmp_path):
    """A 2-layer token tagger learns to output the previous token (it needs memory)."""
    rng = np.random.default_rng(0)
    x = rng.integers(1, 8, (384, 10)).astype(np.int64)
    y = np.zeros_like(x)
    y[:, 1:] = x[:, :-1]  # step 0 has no previous token: padding, ignored
    model = lstm(vocab=8, embed=8, hidden=24, layers=2, classes=8, head="tagger", seed=0)
    trainer = Trainer(model, tmp_path / "run", lr=1e-2, device="cpu", progress=False)
    history = trainer.fit((x[:320], y[:320]), (x[320:], y[320:]), epochs=12, batch_size=32)
    losses = [h["loss"] for h in history]
    assert losses[0] > 1.5 and losses[-1] < 0.5 * losses[0], losses
    assert history[-1]["val_accuracy"] > 0.9, history[-1]


def test_names_layouts_and_metadata():
    model = lstm(vocab=50, embed=16, hidden=32, layers=3, classes=7, head="tagger", dropout=0.2, seed=1)
    w = onnx_weights(model)
    assert w["embed.weight"].shape == (50, 16)
    assert w["lstm1.W"].shape == (1, 128, 16) and w["lstm2.W"].shape == (1, 128, 32)
    assert w["lstm3.R"].shape == (1, 128, 32) and w["lstm3.B"].shape == (1, 256)
    assert w["fc.weight"].shape == (7, 32)
    meta = get_metadata(model)
    assert meta["task"] == "tagging" and meta["builder"] == "lstm" and meta["classes"] == 7
    assert meta["inputs"] == ["x"] and meta["output"] == "logits"
    x = model.graph.input[0].type.tensor_type
    assert x.elem_type == onnx.TensorProto.INT64 and [d.dim_param for d in x.shape.dim] == ["N", "T"]
    lstms = [n for n in model.graph.node if n.op_type == "LSTM"]
    assert len(lstms) == 3 and all(len(n.input) == 7 and len(n.output) == 3 for n in lstms)
    assert sum(n.op_type == "Dropout" for n in model.graph.node) == 2  # between layers only
    out = lstm(8, hidden=4, classes=3, bidirectional=True)
    assert {n.name for n in out.graph.node if n.op_type == "LSTM"} == {"lstm1.forward", "lstm1.backward"}
    assert get_metadata(lstm(8, hidden=4, classes=3))["task"] == "classification"


@pytest.mark.parametrize("kwargs,message", [
    (dict(inputs=3, vocab=5, embed=2), "give exactly one of inputs"),
    (dict(), "give exactly one of inputs"),
    (dict(vocab=5), "needs embed"),
    (dict(inputs=3, embed=4), "embed applies to token models only"),
    (dict(inputs=3, head="decoder"), "head must be one of sequence, tagger"),
    (dict(inputs=3, layers=0), "layers must be a positive integer"),
    (dict(inputs=3, classes=1), "classes must be at least 2"),
])
def test_bad_configuration_is_refused(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        lstm(**kwargs)


def _with_lstm_form(model, form: str):
    node = next(n for n in model.graph.node if n.op_type == "LSTM")
    if form == "sequence_lens":
        model.graph.initializer.append(numpy_helper.from_array(np.array([5, 5], np.int32), "lengths"))
        node.input[4] = "lengths"
        return model
    key, value = {"reverse": ("direction", "reverse"), "clip": ("clip", 3.0), "layout": ("layout", 1),
                  "input_forget": ("input_forget", 1)}[form]
    for a in list(node.attribute):
        if a.name == key:
            node.attribute.remove(a)
    node.attribute.append(helper.make_attribute(key, value))
    return model


def _describe(model, tmp_path) -> dict:
    from onnxforge.cli.inspect import describe_model
    from onnxforge.runtime.modelio.files import save_model

    return describe_model(str(save_model(model, tmp_path / "m.onnx")))


@pytest.mark.parametrize("form,reason", [
    ("reverse", "direction=reverse"), ("clip", "with clip"), ("layout", "layout=1"),
    ("input_forget", "input_forget=1"), ("sequence_lens", "sequence_lens"),
])
def test_lstm_forms_ort_training_cannot_train_are_refused_by_artifacts_before_work(tmp_path, form, reason):
    model = _with_lstm_form(lstm(4, hidden=5, classes=3), form)
    rundir = tmp_path / "run"
    with pytest.raises(NotTrainableError, match=rf"LSTM \(lstm1\) {'with ' if 'with' not in reason else ''}{reason}"):
        Trainer(model, rundir, device="cpu", progress=False, backend="artifacts")  # ORT training's limits
    assert not rundir.exists()
    artifacts = _describe(model, tmp_path)["backends"]["artifacts"]
    assert artifacts["trainable"] is False and reason in artifacts["not_trainable_because"]


@pytest.mark.parametrize("form", ["clip", "layout", "input_forget", "sequence_lens"])
def test_lstm_forms_the_onnx_backend_cannot_train_are_refused_in_one_line_before_work(tmp_path, form):
    """What autodiff's LSTM rule does not cover: one line naming the node and the form, no folder."""
    model = _with_lstm_form(lstm(4, hidden=5, classes=3), form)
    what = {"clip": "clip", "layout": "layout=1", "input_forget": "input_forget=1", "sequence_lens": "sequence_lens"}[form]
    rundir = tmp_path / "run"
    with pytest.raises(NotTrainableError) as info:
        Trainer(model, rundir, device="cpu", progress=False, backend="onnx")
    assert f"LSTM (lstm1): {what} is not covered" in str(info.value) and "\n" not in str(info.value)
    assert not rundir.exists()
    described = _describe(model, tmp_path)
    onnx_backend = described["backends"]["onnx"]
    assert onnx_backend["trainable"] is False and f"{what} is not covered" in onnx_backend["not_trainable_because"]
    assert described["backend_auto"] == "onnx" and described["trainable"] is False


def _bidirectional_node_model(rng, inputs=4, hidden=5, classes=3):
    """x [N, T, I] -> one LSTM node with direction=bidirectional -> [h_forward, h_backward] -> fc."""
    H = hidden
    w = {"W": rng.uniform(-0.5, 0.5, (2, 4 * H, inputs)), "R": rng.uniform(-0.5, 0.5, (2, 4 * H, H)),
         "B": rng.uniform(-0.5, 0.5, (2, 8 * H)), "fc.weight": rng.uniform(-0.5, 0.5, (classes, 2 * H)),
         "fc.bias": rng.uniform(-0.5, 0.5, classes)}
    inits = [numpy_helper.from_array(v.astype(np.float32), k) for k, v in w.items()]
    inits.append(numpy_helper.from_array(np.array([0, 2 * H], np.int64), "flat"))
    nodes = [helper.make_node("Transpose", ["x"], ["xt"], perm=[1, 0, 2]),
             helper.make_node("LSTM", ["xt", "W", "R", "B"], ["", "h"], name="bi", hidden_size=H,
                              direction="bidirectional"),
             helper.make_node("Transpose", ["h"], ["hn"], perm=[1, 0, 2]),
             helper.make_node("Reshape", ["hn", "flat"], ["last"]),
             helper.make_node("Gemm", ["last", "fc.weight", "fc.bias"], ["logits"], transB=1)]
    graph = helper.make_graph(nodes, "bi", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["N", 7, inputs])],
                              [helper.make_tensor_value_info("logits", onnx.TensorProto.FLOAT, ["N", classes])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    return model


def _node_twin(w: dict, bidirectional: bool) -> TorchLSTMNet:
    """PyTorch's nn.LSTM on the weights of one LSTM node (W, R, B of 1 or 2 directions) and fc."""
    H = w["R"].shape[-1]
    args = dict(vocab=None, inputs=w["W"].shape[-1], hidden=H, layers=1, classes=w["fc.bias"].shape[0],
                head="sequence", bidirectional=bidirectional)
    state = {"fc.weight": w["fc.weight"], "fc.bias": w["fc.bias"]}
    for d, suffix in enumerate(["", "_reverse"][: 2 if bidirectional else 1]):
        state[f"lstm.weight_ih_l0{suffix}"] = gates_to_torch(w["W"][d])
        state[f"lstm.weight_hh_l0{suffix}"] = gates_to_torch(w["R"][d])
        state[f"lstm.bias_ih_l0{suffix}"] = gates_to_torch(w["B"][d][: 4 * H])
        state[f"lstm.bias_hh_l0{suffix}"] = gates_to_torch(w["B"][d][4 * H:])
    net = TorchLSTMNet(args)
    net.load_state_dict({k: torch.tensor(np.array(v)) for k, v in state.items()})
    return net


@pytest.mark.parametrize("form", ["reverse", "bidirectional-node"])
def test_the_onnx_backend_trains_reverse_and_bidirectional_lstm_nodes_like_pytorch(tmp_path, form, rng):
    """One SGD step on the onnx backend equals PyTorch's: a reverse LSTM reads the sequence from
    its end (nn.LSTM on the flipped sequence), a bidirectional node is nn.LSTM(bidirectional=True)."""
    if form == "reverse":
        model = _with_lstm_form(lstm(4, hidden=5, classes=3, seed=3), form)
        names = {"W": "lstm1.W", "R": "lstm1.R", "B": "lstm1.B", "fc.weight": "fc.weight", "fc.bias": "fc.bias"}
    else:
        model = _bidirectional_node_model(rng)
        names = {k: k for k in ("W", "R", "B", "fc.weight", "fc.bias")}
    x = rng.standard_normal((8, 7, 4)).astype(np.float32)
    y = rng.integers(0, 3, 8).astype(np.int64)
    w = onnx_weights(model)
    net = _node_twin({k: w[v] for k, v in names.items()}, form != "reverse")
    lr = 0.5
    trainer = Trainer(model, tmp_path / "run", optimizer="sgd", lr=lr, device="cpu", progress=False, backend="onnx")
    trainer.fit((x, y), epochs=1, batch_size=8, shuffle=False)
    xt = torch.tensor(x)
    loss = torch.nn.functional.cross_entropy(net(xt.flip(1) if form == "reverse" else xt), torch.tensor(y))
    loss.backward()
    with torch.no_grad():
        for p in net.parameters():
            p -= lr * p.grad
    after = trainer.parameters()
    mine = _node_twin({k: after[v] for k, v in names.items()}, form != "reverse").state_dict()
    before = _node_twin({k: w[v] for k, v in names.items()}, form != "reverse").state_dict()
    for name, value in net.state_dict().items():
        assert not torch.allclose(mine[name], before[name]), f"{name} did not move"
        np.testing.assert_allclose(mine[name].numpy(), value.numpy(), atol=1e-5, rtol=0, err_msg=name)
    assert _describe(model, tmp_path)["backends"]["onnx"]["trainable"] is True


@pytest.mark.slow
def test_digits_rows_accuracy(tmp_path):
    from onnxforge.samples import load_digits

    (x, y), (xt, yt) = load_digits("rows")
    trainer = Trainer(lstm(8, hidden=64, classes=10), tmp_path / "run", lr=5e-3, schedule="cosine",
                      device="cpu", progress=False)
    trainer.fit((x, y), epochs=20, batch_size=32)
    logits = load(tmp_path / "run" / "model.onnx", device="cpu").run({"x": xt})["logits"]
    assert (logits.argmax(1) == yt).mean() >= 0.96
