"""The benchmark's workloads: each model family's ONNX graph, a PyTorch twin with the same weights
(the ONNX initialisers copied in) and data. PyTorch is imported on first use (the ``torch`` extra)."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
from onnx import numpy_helper

from onnxforge.graphs.lstm_gates import onnx_to_torch
from onnxforge.runtime.errors import ConfigError, RuntimeUnavailableError
from onnxforge.runtime.inference.decoding import prepare_seq2seq_arrays
from onnxforge.runtime.modelio.card import ModelCard
from onnxforge.graphs import mlp
from onnxforge.graphs.convnet import convnet
from onnxforge.graphs.lstm import lstm
from onnxforge.graphs.seq2seq import seq2seq

__all__ = ["FAMILIES", "TWINS", "Workload", "workloads", "torch_module", "optional_torch", "TORCH_MISSING"]

FAMILIES = ("mlp", "convnet", "lstm", "seq2seq")


def torch_module():
    try:
        import torch
    except ImportError:
        raise RuntimeUnavailableError(
            "the benchmark compares against PyTorch, which is not installed; pip install 'onnxforge[torch]'"
        ) from None
    return torch


TORCH_MISSING = "PyTorch is not installed (add it with pip install 'onnxforge[torch]'; its wheels: CPython 3.10-3.13)"


def optional_torch():
    """PyTorch, or None where it is not installed (the benchmark then runs the other contestants)."""
    try:
        return torch_module()
    except RuntimeUnavailableError:
        return None


@dataclass
class Workload:
    """One model to benchmark: its ONNX graph, a PyTorch twin with the same weights, and data."""

    name: str
    family: str
    build: Callable  # () -> onnx.ModelProto
    torch_model: Callable  # (onnx.ModelProto) -> torch.nn.Module taking the inputs in order
    data: Callable  # (n, rng) -> ({input name: array}, y)
    batch: int
    flops_per_example: float | None = None  # training FLOPs per example (forward + backward)
    ignore_index: int | None = None  # padding label the loss skips
    steps: int = 300  # training steps per round (full size; --quick takes an eighth)
    notes: list = field(default_factory=list)


def _initialisers(model) -> dict:
    return {t.name: numpy_helper.to_array(t).copy() for t in model.graph.initializer}


def _mlp_torch(model):
    torch = torch_module()
    args = ModelCard.from_model(model).args
    if args.get("activation", "relu").lower() != "relu" or args.get("dropout", 0.0):
        raise ConfigError("the benchmark's PyTorch MLP twin supports ReLU without dropout only")
    w = _initialisers(model)
    layers = []
    sizes = [args["in_features"], *args["hidden"], args["out_features"]]
    for i in range(1, len(sizes)):
        lin = torch.nn.Linear(sizes[i - 1], sizes[i])
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(w[f"fc{i}.weight"]))
            lin.bias.copy_(torch.from_numpy(w[f"fc{i}.bias"]))
        layers.append(lin)
        if i < len(sizes) - 1:
            layers.append(torch.nn.ReLU())
    return torch.nn.Sequential(*layers)


def _param(t, value: np.ndarray):
    torch = torch_module()
    with torch.no_grad():
        t.copy_(torch.from_numpy(np.ascontiguousarray(value)).reshape(t.shape))


def _convnet_torch(model):
    torch = torch_module()
    a = ModelCard.from_model(model).args
    if a.get("dropout") or a.get("batchnorm") or a["kernel"] % 2 == 0:
        raise ConfigError("the benchmark's PyTorch ConvNet twin supports odd kernels without dropout or batch norm")
    w = _initialisers(model)
    layers, c, (h, wd) = [], a["input_shape"][0], a["input_shape"][1:]
    for i, out_ch in enumerate(a["channels"], start=1):
        conv = torch.nn.Conv2d(c, out_ch, a["kernel"], padding=a["kernel"] // 2)
        _param(conv.weight, w[f"conv{i}.weight"])
        _param(conv.bias, w[f"conv{i}.bias"])
        layers += [conv, torch.nn.ReLU()]
        if a["pool"] > 1:
            layers.append(torch.nn.MaxPool2d(a["pool"]))
            h, wd = h // a["pool"], wd // a["pool"]
        c = out_ch
    layers.append(torch.nn.Flatten())
    sizes = [c * h * wd, *a["dense"], a["classes"]]
    for i in range(1, len(sizes)):
        lin = torch.nn.Linear(sizes[i - 1], sizes[i])
        _param(lin.weight, w[f"fc{i}.weight"])
        _param(lin.bias, w[f"fc{i}.bias"])
        layers.append(lin)
        if i < len(sizes) - 1:
            layers.append(torch.nn.ReLU())
    return torch.nn.Sequential(*layers)


def _copy_lstm(lstm, w: dict, prefixes: list[str], hidden: int) -> None:
    for layer, p in enumerate(prefixes):
        bias = w[f"{p}.B"][0]
        _param(getattr(lstm, f"weight_ih_l{layer}"), onnx_to_torch(w[f"{p}.W"][0]))
        _param(getattr(lstm, f"weight_hh_l{layer}"), onnx_to_torch(w[f"{p}.R"][0]))
        _param(getattr(lstm, f"bias_ih_l{layer}"), onnx_to_torch(bias[: 4 * hidden]))
        _param(getattr(lstm, f"bias_hh_l{layer}"), onnx_to_torch(bias[4 * hidden:]))


def _lstm_torch(model):
    torch = torch_module()
    a = ModelCard.from_model(model).args
    if a.get("vocab") or a.get("bidirectional") or a.get("dropout") or a["head"] != "sequence":
        raise ConfigError("the benchmark's PyTorch LSTM twin supports float features, one direction and the sequence head")
    w = _initialisers(model)

    class Twin(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = torch.nn.LSTM(a["inputs"], a["hidden"], a["layers"], batch_first=True)
            self.fc = torch.nn.Linear(a["hidden"], a["classes"])

        def forward(self, x):
            _, (h, _) = self.lstm(x)
            return self.fc(h[-1])

    net = Twin()
    _copy_lstm(net.lstm, w, [f"lstm{i}" for i in range(1, a["layers"] + 1)], a["hidden"])
    _param(net.fc.weight, w["fc.weight"])
    _param(net.fc.bias, w["fc.bias"])
    return net


def _seq2seq_torch(model):
    torch = torch_module()
    a = ModelCard.from_model(model).args
    if a["attention"] not in ("dot", "general"):
        raise ConfigError("the benchmark's PyTorch encoder-decoder twin needs attention 'dot' or 'general'")
    w = _initialisers(model)
    hidden, layers = a["hidden"], a["layers"]

    class Twin(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.src_emb = torch.nn.Embedding(a["src_vocab"], a["embed"])
            self.tgt_emb = torch.nn.Embedding(a["tgt_vocab"], a["embed"])
            self.encoder = torch.nn.LSTM(a["embed"], hidden, layers, batch_first=True)
            self.decoder = torch.nn.LSTM(a["embed"], hidden, layers, batch_first=True)
            self.attn = torch.nn.Parameter(torch.empty(hidden, hidden)) if a["attention"] == "general" else None
            self.combine = torch.nn.Linear(2 * hidden, hidden)
            self.output = torch.nn.Linear(hidden, a["tgt_vocab"])

        def forward(self, src, decoder_input):
            memory, state = self.encoder(self.src_emb(src))
            dec, _ = self.decoder(self.tgt_emb(decoder_input), state)
            query = dec @ self.attn if self.attn is not None else dec
            scores = query @ memory.transpose(1, 2) + (src == 0).unsqueeze(1).float() * -1e9
            context = torch.softmax(scores, dim=-1) @ memory
            top = torch.tanh(self.combine(torch.cat([context, dec], dim=-1)))
            return self.output(top)

    net = Twin()
    _param(net.src_emb.weight, w["encoder.embedding.weight"])
    _param(net.tgt_emb.weight, w["decoder.embedding.weight"])
    names = ["lstm"] if layers == 1 else [f"lstm{i}" for i in range(1, layers + 1)]
    _copy_lstm(net.encoder, w, [f"encoder.{n}" for n in names], hidden)
    _copy_lstm(net.decoder, w, [f"decoder.{n}" for n in names], hidden)
    if net.attn is not None:
        _param(net.attn, w["attention.weight"])
    for mod, p in ((net.combine, "combine"), (net.output, "output")):
        _param(mod.weight, w[f"{p}.weight"])
        _param(mod.bias, w[f"{p}.bias"])
    return net


# family -> the PyTorch twin of a model of it (the model's metadata gives the architecture)
TWINS = {"mlp": _mlp_torch, "convnet": _convnet_torch, "lstm": _lstm_torch, "seq2seq": _seq2seq_torch}


def _sequence_data(steps: int, features: int, classes: int):
    def make(n, rng):
        x = rng.standard_normal((n, steps, features)).astype(np.float32)
        return {"x": x}, rng.integers(0, classes, n).astype(np.int64)
    return make


def _seq2seq_data(vocab: int, length: int):
    def make(n, rng):
        src = rng.integers(3, vocab, (n, length)).astype(np.int64)
        tgt = src[:, ::-1].copy()  # the reversal task
        arrays = prepare_seq2seq_arrays({"src": src, "tgt": tgt})
        return {"src": arrays["src"], "decoder_input": arrays["decoder_input"]}, arrays["y"]
    return make


def _classification_data(features: tuple, classes: int):
    def make(n, rng):
        x = rng.standard_normal((n, *features)).astype(np.float32)
        y = rng.integers(0, classes, n).astype(np.int64)
        return {"x": x}, y
    return make


def _mlp_flops(sizes) -> float:
    """Forward 2*in*out per layer, weight gradient 2*in*out, input gradient 2*in*out except layer 1."""
    per = [2 * a * b for a, b in zip(sizes[:-1], sizes[1:])]
    return float(sum(per) * 2 + sum(per[1:]))


def workloads(quick: bool = False) -> dict[str, Workload]:
    """The workloads whose builders exist in this checkout, by name."""
    out = {
        "mlp": Workload("mlp 64-128-10", "mlp", lambda: mlp(64, [128], 10, seed=0), _mlp_torch,
                        _classification_data((64,), 10), 64, _mlp_flops([64, 128, 10])),
        "mlp-large": Workload("mlp 784-1024-1024-10", "mlp", lambda: mlp(784, [1024, 1024], 10, seed=0), _mlp_torch,
                              _classification_data((784,), 10), 256, _mlp_flops([784, 1024, 1024, 10]), steps=10),
    }

    if _has_module("onnxforge.graphs.convnet"):
        out["convnet"] = Workload("convnet 1x8x8 16-32", "convnet", lambda: convnet((1, 8, 8), (16, 32), seed=0),
                                  _convnet_torch, _classification_data((1, 8, 8), 10), 64, steps=120)
    if _has_module("onnxforge.graphs.lstm"):
        out["lstm"] = Workload("lstm T20 in16 h64 unrolled", "lstm",
                               lambda: lstm(16, hidden=64, classes=10, seed=0, impl="unrolled", steps=20),
                               _lstm_torch, _sequence_data(20, 16, 10), 64, steps=80)
        out["lstm-node"] = Workload("lstm T20 in16 h64 LSTM op", "lstm", lambda: lstm(16, hidden=64, classes=10, seed=0),
                                    _lstm_torch, _sequence_data(20, 16, 10), 64, steps=24)
    if _has_module("onnxforge.graphs.seq2seq"):
        out["seq2seq"] = Workload("seq2seq v20 len8 h32 dot unrolled", "seq2seq",
                                  lambda: seq2seq(20, 20, 32, 32, seed=0, max_len=8, impl="unrolled"),
                                  _seq2seq_torch, _seq2seq_data(20, 8), 64, ignore_index=0, steps=80)
        out["seq2seq-node"] = Workload("seq2seq v20 len8 h32 dot LSTM op", "seq2seq",
                                       lambda: seq2seq(20, 20, 32, 32, seed=0, max_len=8),
                                       _seq2seq_torch, _seq2seq_data(20, 8), 64, ignore_index=0, steps=40)
    return out


def _has_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False
