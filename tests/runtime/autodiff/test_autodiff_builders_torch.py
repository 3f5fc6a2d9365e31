"""Whole-model gradients of every onnxforge builder equal PyTorch's on the same weights and batch
(twins written here, weights mapped by name; ONNX LSTM gates i, o, f, c vs PyTorch's i, f, g, o)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F
from onnx import helper, numpy_helper

from _autodiff_check import assert_close, gradients
from onnxforge.graphs import convnet, lstm, mlp, seq2seq
from onnxforge.graphs.lstm_gates import onnx_to_torch
from onnxforge.runtime.autodiff import batchnorm_training_form

pytestmark = pytest.mark.torch
R = np.random.default_rng(3)
TOL = 1e-5


def weights(model):
    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer if t.data_type == onnx.TensorProto.FLOAT}


def params(model, names=None):
    ws = weights(model)
    return {k: torch.tensor(v.astype(np.float64), requires_grad=True) for k, v in ws.items()
            if names is None or k in names}


def check(model, feeds, twin, out="logits", wrt=None, both=True, tol=TOL):
    """dY-weighted gradients of output ``out`` w.r.t. every float initialiser (or ``wrt``)."""
    ws = weights(model)
    wrt = wrt or list(ws)
    p = params(model, wrt)
    fixed = {k: torch.tensor(v.astype(np.float64)) for k, v in ws.items() if k not in p}
    tfeeds = {k: torch.tensor(v.astype(np.float64) if v.dtype.kind == "f" else v) for k, v in feeds.items()}
    y = twin({**fixed, **p}, tfeeds)
    dy = R.standard_normal(tuple(y.shape)).astype(np.float32)
    y.backward(torch.tensor(dy, dtype=torch.float64))
    got, outs, g = gradients(model, wrt, out, {**feeds, "dY": dy}, seed="dY", both=both, tol=tol)
    assert_close(outs[out], y.detach().numpy(), tol, what="forward")
    for k in wrt:
        assert_close(got[k], p[k].grad.numpy(), tol, what=f"builder d{k}")
    return g, outs


def linear(p, name, x):
    return x @ p[f"{name}.weight"].T + p[f"{name}.bias"]


ACTS = {"relu": torch.relu, "tanh": torch.tanh, "sigmoid": torch.sigmoid,
        "leaky_relu": lambda x: F.leaky_relu(x, 0.01), "swish": F.silu, "gelu": F.gelu, "mish": F.mish,
        "softplus": F.softplus, "elu": F.elu}


@pytest.mark.parametrize("activation", list(ACTS))
def test_mlp(activation):
    m = mlp(6, [7, 5], 4, activation=activation)
    x = R.standard_normal((9, 6)).astype(np.float32)

    def twin(p, f):
        h = f["x"]
        for i in (1, 2):
            h = ACTS[activation](linear(p, f"fc{i}", h))
        return linear(p, "fc3", h)
    check(m, {"x": x}, twin)


def test_mlp_sum_of_logits_default_seed():
    m = mlp(6, [7], 4)
    x = R.standard_normal((5, 6)).astype(np.float32)
    p = params(m)
    y = linear(p, "fc2", torch.relu(linear(p, "fc1", torch.tensor(x, dtype=torch.float64))))
    y.sum().backward()
    got, _, _ = gradients(m, list(p), "logits", {"x": x})
    for k in p:
        assert_close(got[k], p[k].grad.numpy(), what="mlp sum")


def test_mlp_cross_entropy_loss():
    """A scalar loss appended to the graph (what the training backend does), params as inputs."""
    m = mlp(6, [7], 4)
    g = m.graph
    g.input.append(helper.make_tensor_value_info("onehot", onnx.TensorProto.FLOAT, ["N", 4]))
    g.node.extend([
        helper.make_node("LogSoftmax", ["logits"], ["logp"], axis=-1),
        helper.make_node("Mul", ["logp", "onehot"], ["picked"]),
        helper.make_node("ReduceSum", ["picked"], ["total"], keepdims=0),
        helper.make_node("Shape", ["logits"], ["shape"], start=0, end=1),
        helper.make_node("Cast", ["shape"], ["n"], to=1),
        helper.make_node("Div", ["total", "n"], ["negloss"]),
        helper.make_node("Neg", ["negloss"], ["loss1"]),
        helper.make_node("Squeeze", ["loss1"], ["loss"]),
    ])
    g.output.append(helper.make_tensor_value_info("loss", onnx.TensorProto.FLOAT, []))
    # parameters as graph inputs, as the training graph has them
    ws = weights(m)
    del g.initializer[:]
    for k, v in ws.items():
        g.input.append(helper.make_tensor_value_info(k, onnx.TensorProto.FLOAT, list(v.shape)))
    x = R.standard_normal((8, 6)).astype(np.float32)
    labels = R.integers(0, 4, 8)
    onehot = np.eye(4, dtype=np.float32)[labels]
    p = params_from(ws)
    y = linear(p, "fc2", torch.relu(linear(p, "fc1", torch.tensor(x, dtype=torch.float64))))
    F.cross_entropy(y, torch.tensor(labels)).backward()
    got, outs, _ = gradients(m, list(ws), "loss", {"x": x, "onehot": onehot, **ws})
    for k in ws:
        assert_close(got[k], p[k].grad.numpy(), what="mlp cross-entropy")


def params_from(ws):
    return {k: torch.tensor(v.astype(np.float64), requires_grad=True) for k, v in ws.items()}


def conv_twin(channels, batchnorm, kernel=3, pool=2):
    before, after = (kernel - 1) // 2, kernel // 2

    def twin(p, f):
        x = f["x"]
        for i in range(1, len(channels) + 1):
            x = F.conv2d(F.pad(x, (before, after, before, after)), p[f"conv{i}.weight"], p.get(f"conv{i}.bias"))
            if batchnorm:
                x = F.batch_norm(x, None, None, p[f"bn{i}.scale"], p[f"bn{i}.bias"], True, 0.1, 1e-5)
            x = torch.relu(x)
            if pool > 1:
                x = F.max_pool2d(x, pool, pool)
        x = x.flatten(1)
        return linear(p, "fc1", x)
    return twin


@pytest.mark.parametrize("batchnorm", [False, True], ids=["plain", "batchnorm"])
def test_convnet(batchnorm):
    channels = (4, 6)
    m = convnet((2, 8, 8), channels, kernel=3, pool=2, classes=5, batchnorm=batchnorm)
    x = R.standard_normal((3, 2, 8, 8)).astype(np.float32)
    wrt = [k for k in weights(m) if "running" not in k]
    if batchnorm:
        m, updates = batchnorm_training_form(m)
    g, outs = check(m, {"x": x}, conv_twin(channels, batchnorm), wrt=wrt)
    if batchnorm:
        # updated running statistics: momentum 0.9 (ONNX convention), biased batch variance
        z = F.conv2d(F.pad(torch.tensor(x, dtype=torch.float64), (1, 1, 1, 1)),
                     torch.tensor(weights(m)["conv1.weight"], dtype=torch.float64))
        mean = z.mean((0, 2, 3)).numpy()
        var = z.var((0, 2, 3), unbiased=False).numpy()
        assert_close(outs[updates["bn1.running_mean"]], 0.9 * 0 + 0.1 * mean, what="bn running mean")
        assert_close(outs[updates["bn1.running_var"]], 0.9 * 1 + 0.1 * var, what="bn running var")


def test_convnet_odd_kernel_no_pool_dense():
    m = convnet((1, 6, 6), (3,), kernel=2, pool=1, dense=(5,), classes=3)
    x = R.standard_normal((2, 1, 6, 6)).astype(np.float32)

    def twin(p, f):
        z = torch.relu(F.conv2d(F.pad(f["x"], (0, 1, 0, 1)), p["conv1.weight"], p["conv1.bias"]))
        z = torch.relu(linear(p, "fc1", z.flatten(1)))
        return linear(p, "fc2", z)
    check(m, {"x": x}, twin)


def torch_lstm(p, prefix, x, H, h0=None, c0=None, reverse=False):
    """ONNX-layout parameters run through torch.nn.functional's LSTM cell via torch.lstm."""
    w = onnx_to_torch(p[f"{prefix}.W"][0])
    r = onnx_to_torch(p[f"{prefix}.R"][0])
    b = p[f"{prefix}.B"][0]
    bw, br = onnx_to_torch(b[:4 * H]), onnx_to_torch(b[4 * H:])
    N = x.shape[1]
    h = h0 if h0 is not None else torch.zeros(1, N, H, dtype=x.dtype)
    c = c0 if c0 is not None else torch.zeros(1, N, H, dtype=x.dtype)
    xs = x.flip(0) if reverse else x
    y, hn, cn = torch.lstm(xs, (h, c), [w, r, bw, br], True, 1, 0.0, False, False, False)
    return (y.flip(0) if reverse else y), hn, cn


@pytest.mark.parametrize("kind", ["features", "tokens", "bidirectional", "tagger", "two-layers"])
def test_lstm_builder(kind):
    H, T, N = 4, 5, 3
    kw = dict(hidden=H, classes=3)
    if kind == "tokens":
        m = lstm(vocab=7, embed=3, **kw)
        feeds = {"x": R.integers(0, 7, (N, T)).astype(np.int64)}
    else:
        m = lstm(3, bidirectional=kind == "bidirectional", head="tagger" if kind == "tagger" else "sequence",
                 layers=2 if kind == "two-layers" else 1, **kw)
        feeds = {"x": R.standard_normal((N, T, 3)).astype(np.float32)}

    def twin(p, f):
        x = p["embed.weight"][f["x"]] if kind == "tokens" else f["x"]
        x = x.transpose(0, 1)
        if kind == "bidirectional":
            yf, hf, _ = torch_lstm(p, "lstm1.forward", x, H)
            yb, hb, _ = torch_lstm(p, "lstm1.backward", x, H, reverse=True)
            last = torch.cat([hf[0], hb[0]], -1)
            return linear(p, "fc", last)
        layers = 2 if kind == "two-layers" else 1
        for i in range(1, layers + 1):
            x, hn, _ = torch_lstm(p, f"lstm{i}", x, H)
        if kind == "tagger":
            return x.transpose(0, 1) @ p["fc.weight"].T + p["fc.bias"]
        return linear(p, "fc", hn[0])
    check(m, feeds, twin)


@pytest.mark.parametrize("attention", ["dot", "general", None])
def test_seq2seq(attention):
    H, E, S, T, N = 5, 4, 6, 4, 3
    m = seq2seq(9, 8, E, H, attention=attention)
    src = R.integers(3, 9, (N, S)).astype(np.int64)
    src[0, :2] = 0  # padding (leading: read as steps by every encoder form), masked out of the attention
    dec = R.integers(1, 8, (N, T)).astype(np.int64)

    def twin(p, f):
        xe = p["encoder.embedding.weight"][f["src"]].transpose(0, 1)
        enc, hn, cn = torch_lstm(p, "encoder.lstm", xe, H)
        xd = p["decoder.embedding.weight"][f["decoder_input"]].transpose(0, 1)
        d, _, _ = torch_lstm(p, "decoder.lstm", xd, H, hn, cn)
        memory, d = enc.transpose(0, 1), d.transpose(0, 1)
        if attention is None:
            top = d.reshape(-1, H)
        else:
            q = d @ p["attention.weight"] if attention == "general" else d
            scores = q @ memory.transpose(1, 2) + ((f["src"] == 0).double() * -1e9)[:, None, :]
            w = torch.softmax(scores, -1)
            both = torch.cat([w @ memory, d], -1).reshape(-1, 2 * H)
            top = torch.tanh(linear(p, "combine", both))
        return linear(p, "output", top).reshape(N, T, -1)
    check(m, {"src": src, "decoder_input": dec}, twin)
