"""Benchmarks: onnxforge against raw ONNX Runtime and PyTorch eager, in one process run.

Every comparison uses the same model (the PyTorch twin gets the ONNX initialisers copied in), the
same data and batches, the same optimizer (AdamW, betas 0.9/0.999, eps 1e-8, weight decay 0.01,
constant learning rate) and the same thread count. The contestants run alternately, round after
round, and each figure is the median over rounds, so a short slowdown of the machine hits all of
them alike. Ratios are always "ours / baseline" in speed (above 1 means onnxforge is faster).

``run_benchmarks`` returns a JSON-ready dict; ``format_table`` prints it. PyTorch is needed (the
``torch`` or ``dev`` extra); it is imported only here.
"""

from __future__ import annotations

import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from onnxforge.runtime.ort.distribution import ort, runtime_info, training_api
from onnxforge.runtime.errors import ConfigError, RuntimeUnavailableError

__all__ = ["FAMILIES", "Workload", "workloads", "run_benchmarks", "format_table", "gemm_peak"]

FAMILIES = ("mlp", "convnet", "lstm", "seq2seq")
LR = 1e-3
# pause between contestants' training rounds: PyTorch's OpenMP workers spin for a while after a
# parallel region and would take a core from whoever runs next (seen: ORT at 0.4x right after it)
COOL_DOWN_S = 0.3
WEIGHT_DECAY = 0.01


def _torch():
    try:
        import torch
    except ImportError:
        raise RuntimeUnavailableError(
            "the benchmark compares against PyTorch, which is not installed; pip install 'onnxforge[torch]'"
        ) from None
    return torch


# -- workloads -------------------------------------------------------------------------------------
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
    from onnx import numpy_helper

    return {t.name: numpy_helper.to_array(t).copy() for t in model.graph.initializer}


def _mlp_torch(model):
    torch = _torch()
    from onnxforge.runtime.modelio.files import get_metadata

    args = get_metadata(model)["args"]
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
    torch = _torch()
    with torch.no_grad():
        t.copy_(torch.from_numpy(np.ascontiguousarray(value)).reshape(t.shape))


def _convnet_torch(model):
    torch = _torch()
    from onnxforge.runtime.modelio.files import get_metadata

    a = get_metadata(model)["args"]
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


def _onnx_to_torch_gates(m: np.ndarray, hidden: int) -> np.ndarray:
    """ONNX stacks the LSTM gates i, o, f, c; PyTorch i, f, g (= c), o."""
    i, o, f, c = (m[k * hidden:(k + 1) * hidden] for k in range(4))
    return np.concatenate([i, f, c, o])


def _copy_lstm(lstm, w: dict, prefixes: list[str], hidden: int) -> None:
    for layer, p in enumerate(prefixes):
        bias = w[f"{p}.B"][0]
        _param(getattr(lstm, f"weight_ih_l{layer}"), _onnx_to_torch_gates(w[f"{p}.W"][0], hidden))
        _param(getattr(lstm, f"weight_hh_l{layer}"), _onnx_to_torch_gates(w[f"{p}.R"][0], hidden))
        _param(getattr(lstm, f"bias_ih_l{layer}"), _onnx_to_torch_gates(bias[: 4 * hidden], hidden))
        _param(getattr(lstm, f"bias_hh_l{layer}"), _onnx_to_torch_gates(bias[4 * hidden:], hidden))


def _lstm_torch(model):
    torch = _torch()
    from onnxforge.runtime.modelio.files import get_metadata

    a = get_metadata(model)["args"]
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
    torch = _torch()
    from onnxforge.runtime.modelio.files import get_metadata

    a = get_metadata(model)["args"]
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


def _sequence_data(steps: int, features: int, classes: int):
    def make(n, rng):
        x = rng.standard_normal((n, steps, features)).astype(np.float32)
        return {"x": x}, rng.integers(0, classes, n).astype(np.int64)
    return make


def _seq2seq_data(vocab: int, length: int):
    def make(n, rng):
        from onnxforge.runtime.inference.decoding import prepare_seq2seq_arrays

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
    from onnxforge.graphs import mlp

    out = {
        "mlp": Workload("mlp 64-128-10", "mlp", lambda: mlp(64, [128], 10, seed=0), _mlp_torch,
                        _classification_data((64,), 10), 64, _mlp_flops([64, 128, 10])),
        "mlp-large": Workload("mlp 784-1024-1024-10", "mlp", lambda: mlp(784, [1024, 1024], 10, seed=0), _mlp_torch,
                              _classification_data((784,), 10), 256, _mlp_flops([784, 1024, 1024, 10]), steps=10),
    }

    if _has_module("onnxforge.graphs.convnet"):
        from onnxforge.graphs.convnet import convnet

        out["convnet"] = Workload("convnet 1x8x8 16-32", "convnet", lambda: convnet((1, 8, 8), (16, 32), seed=0),
                                  _convnet_torch, _classification_data((1, 8, 8), 10), 64, steps=120)
    if _has_module("onnxforge.graphs.lstm"):
        from onnxforge.graphs.lstm import lstm

        out["lstm"] = Workload("lstm T20 in16 h64 unrolled", "lstm",
                               lambda: lstm(16, hidden=64, classes=10, seed=0, impl="unrolled", steps=20),
                               _lstm_torch, _sequence_data(20, 16, 10), 64, steps=80)
        out["lstm-node"] = Workload("lstm T20 in16 h64 LSTM op", "lstm", lambda: lstm(16, hidden=64, classes=10, seed=0),
                                    _lstm_torch, _sequence_data(20, 16, 10), 64, steps=24)
    if _has_module("onnxforge.graphs.seq2seq"):
        from onnxforge.graphs.seq2seq import seq2seq

        out["seq2seq"] = Workload("seq2seq v20 len8 h32 dot unrolled", "seq2seq",
                                  lambda: seq2seq(20, 20, 32, 32, seed=0, max_len=8, impl="unrolled"),
                                  _seq2seq_torch, _seq2seq_data(20, 8), 64, ignore_index=0, steps=80)
        out["seq2seq-node"] = Workload("seq2seq v20 len8 h32 dot LSTM op", "seq2seq",
                                       lambda: seq2seq(20, 20, 32, 32, seed=0, max_len=8),
                                       _seq2seq_torch, _seq2seq_data(20, 8), 64, ignore_index=0, steps=40)
    return out


def _has_module(name: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


# -- measurements ----------------------------------------------------------------------------------
def _median(values):
    return float(np.median(values)) if len(values) else None


def _threads_guard(threads: int):
    """Limit numpy's BLAS to ``threads`` while measuring its GEMM peak (threadpoolctl when present)."""
    try:
        from threadpoolctl import threadpool_limits

        return threadpool_limits(limits=threads, user_api="blas")
    except ImportError:  # pragma: no cover - numpy then uses its own default
        import contextlib

        return contextlib.nullcontext()


def gemm_peak(threads: int, size: int = 1024, repeats: int = 5) -> dict:
    """numpy float32 GEMM speed (GFLOP/s): median and best of ``repeats`` square products."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size), dtype=np.float32)
    b = rng.standard_normal((size, size), dtype=np.float32)
    c = np.empty((size, size), np.float32)
    flops = 2.0 * size ** 3
    speeds, cpu_speeds = [], []
    with _threads_guard(threads):
        np.matmul(a, b, out=c)
        for _ in range(repeats):
            t0, c0 = time.perf_counter(), time.process_time()
            np.matmul(a, b, out=c)
            np.matmul(a, b, out=c)
            speeds.append(2 * flops / (time.perf_counter() - t0) / 1e9)
            cpu_speeds.append(2 * flops / max(time.process_time() - c0, 1e-9) / 1e9)
    return {"median_gflops": _median(speeds), "best_gflops": max(speeds), "cpu_gflops": _median(cpu_speeds),
            "size": size}


class _RawTrainer:
    """The training artifacts onnxforge wrote, driven by hand with onnxruntime.training.api."""

    def __init__(self, artifacts: Path, device: str, threads: int, x_names: list[str]):
        from onnxforge.runtime.inference.session import session_options

        _, _, api = training_api()
        self.state = api.CheckpointState.load_checkpoint(str(artifacts / "checkpoint"))
        self.module = api.Module(str(artifacts / "training_model.onnx"), self.state, str(artifacts / "eval_model.onnx"),
                                 device=device, session_options=session_options(threads))
        self.optimizer = api.Optimizer(str(artifacts / "optimizer_model.onnx"), self.module)
        self.optimizer.set_learning_rate(LR)
        self.module.train()
        self.x_names = [n for n in self.module.input_names() if n in x_names]

    def epoch(self, inputs: dict, y: np.ndarray, order: np.ndarray, batch: int) -> float:
        module, optimizer = self.module, self.optimizer
        t0, c0 = time.perf_counter(), time.process_time()
        xs = [inputs[k][order] for k in self.x_names]
        ys = y[order]
        for s in range(0, len(order), batch):
            module(*[x[s : s + batch] for x in xs], ys[s : s + batch])
            optimizer.step()
            module.lazy_reset_grad()
        return time.perf_counter() - t0, time.process_time() - c0


class _TorchTrainer:
    def __init__(self, net, device: str, x_names: list[str], ignore_index: int | None = None,
                 optimizer: str = "adamw"):
        torch = _torch()
        self.torch = torch
        self.device = device
        self.net = net.to(device).train()
        if optimizer == "sgd":
            self.optimizer = torch.optim.SGD(self.net.parameters(), lr=LR)
        else:
            self.optimizer = torch.optim.AdamW(self.net.parameters(), lr=LR, betas=(0.9, 0.999), eps=1e-8,
                                               weight_decay=WEIGHT_DECAY)
        self.loss = torch.nn.CrossEntropyLoss(ignore_index=-100 if ignore_index is None else ignore_index)
        self.x_names = x_names

    def epoch(self, inputs: dict, y: np.ndarray, order: np.ndarray, batch: int) -> float:
        torch, net, opt, loss_fn, dev = self.torch, self.net, self.optimizer, self.loss, self.device
        t0, c0 = time.perf_counter(), time.process_time()
        xs = [torch.from_numpy(inputs[k][order]) for k in self.x_names]
        ys = torch.from_numpy(y[order])
        for s in range(0, len(order), batch):
            xb = [x[s : s + batch].to(dev) for x in xs]
            out = net(*xb)
            loss = loss_fn(out.reshape(-1, out.shape[-1]), ys[s : s + batch].to(dev).reshape(-1))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        if dev == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t0, time.process_time() - c0


def bench_training(w: Workload, *, steps: int, rounds: int, threads: int, device: str = "cpu", progress=None,
                   optimizer: str = "adamw", ours_threads=None, torch_threads: int | None = None) -> dict:
    """Steps/s of onnxforge's Trainer, of the same artifacts driven by hand, and of PyTorch eager.

    ``ours_threads`` (default ``threads``) is the Trainer's setting, "auto" included; raw ORT
    runs with the count the Trainer resolved. ``torch_threads`` (default ``threads``) is PyTorch's."""
    from onnxforge.runtime import Trainer

    torch = _torch()
    torch_before = torch.get_num_threads()
    torch.set_num_threads(torch_threads or threads)
    model = w.build()
    rng = np.random.default_rng(1)
    inputs, y = w.data(steps * w.batch, rng)
    n = len(y)
    x_names = list(inputs)
    with tempfile.TemporaryDirectory(prefix="onnxforge-bench-") as tmp:
        trainer = Trainer(model, Path(tmp) / "run", lr=LR, weight_decay=WEIGHT_DECAY, optimizer=optimizer,
                          schedule="constant", device=device, seed=0, threads=ours_threads or threads, progress=False)
        twin = _TorchTrainer(w.torch_model(model), device, x_names, w.ignore_index, optimizer)
        raw = {}
        times = {"onnxforge": [], "ort": [], "torch": []}
        cpu = {"onnxforge": [], "ort": [], "torch": []}
        peaks = []
        order_rng = np.random.default_rng(2)
        twin.epoch(inputs, y, np.arange(min(n, 50 * w.batch)), w.batch)  # PyTorch's first steps are slow

        def after_epoch(record):
            # every contestant's measured round follows a warm-up round of its own (a round right
            # after another framework finds cold caches): onnxforge's odd epochs warm it up
            if record["epoch"] % 2:
                return
            if "ort" not in raw:
                raw["ort"] = _RawTrainer(trainer.artifacts_dir, device, trainer.intra_op_threads, x_names)
            times["onnxforge"].append(record["seconds"])
            cpu["onnxforge"].append(record["cpu_seconds"])
            # alternate which baseline runs first
            pair = [("ort", raw["ort"]), ("torch", twin)]
            for who, contestant in (pair if len(times["ort"]) % 2 == 0 else pair[::-1]):
                time.sleep(COOL_DOWN_S)
                contestant.epoch(inputs, y, order_rng.permutation(n), w.batch)
                wall, used = contestant.epoch(inputs, y, order_rng.permutation(n), w.batch)
                times[who].append(wall)
                cpu[who].append(used)
            if w.flops_per_example and device == "cpu":  # the GEMM peak, measured between the same rounds
                peaks.append(gemm_peak(threads, repeats=2))
            time.sleep(COOL_DOWN_S)
            if progress is not None:
                progress()

        trainer.fit((inputs if len(inputs) > 1 else inputs[x_names[0]], y), epochs=2 * rounds,
                    batch_size=w.batch, callback=after_epoch)
        split = _step_split(raw["ort"], inputs, y, w.batch) if w.flops_per_example else None
    steps_per_epoch = -(-n // w.batch)
    torch.set_num_threads(torch_before)
    result = {"workload": w.name, "family": w.family, "batch": w.batch, "steps_per_round": steps_per_epoch,
              "rounds": rounds, "device": device, "threads": threads, "optimizer": optimizer,
              "ours_threads": trainer.intra_op_threads, "torch_threads": torch_threads or threads}
    for who, ts in times.items():
        result[who] = {"steps_per_s": steps_per_epoch / _median(ts), "rounds_s": ts,
                       "cpu_steps_per_s": steps_per_epoch / max(_median(cpu[who]), 1e-9)}
        if w.flops_per_example:
            result[who]["gflops"] = result[who]["steps_per_s"] * w.batch * w.flops_per_example / 1e9
            result[who]["cpu_gflops"] = result[who]["cpu_steps_per_s"] * w.batch * w.flops_per_example / 1e9
    result["ratio_vs_ort"] = result["onnxforge"]["steps_per_s"] / result["ort"]["steps_per_s"]
    result["ratio_vs_torch"] = result["onnxforge"]["steps_per_s"] / result["torch"]["steps_per_s"]
    # by process CPU time: robust to other processes' load, meaningful with one thread (with more,
    # threads that spin while waiting count too)
    result["cpu_ratio_vs_ort"] = result["onnxforge"]["cpu_steps_per_s"] / result["ort"]["cpu_steps_per_s"]
    result["cpu_ratio_vs_torch"] = result["onnxforge"]["cpu_steps_per_s"] / result["torch"]["cpu_steps_per_s"]
    if peaks:
        result["gemm_peak"] = {"median_gflops": _median([p["median_gflops"] for p in peaks]),
                               "cpu_gflops": _median([p["cpu_gflops"] for p in peaks]), "size": peaks[0]["size"]}
    if split:
        flops = w.batch * w.flops_per_example
        result["step_split"] = {**split, "forward_backward_gflops": flops / split["forward_backward_s"] / 1e9,
                                "forward_backward_cpu_gflops": flops / split["forward_backward_cpu_s"] / 1e9}
    del torch
    return result


def _step_split(raw: _RawTrainer, inputs: dict, y: np.ndarray, batch: int, steps: int = 5) -> dict:
    """Median seconds of raw ORT's forward+backward and of its optimizer step, apart."""
    feeds = [np.ascontiguousarray(inputs[k][:batch]) for k in raw.x_names]
    labels = np.ascontiguousarray(y[:batch])
    parts = {"forward_backward_s": [], "forward_backward_cpu_s": [], "optimizer_s": [], "optimizer_cpu_s": []}
    for _ in range(steps):
        t0, c0 = time.perf_counter(), time.process_time()
        raw.module(*feeds, labels)
        t1, c1 = time.perf_counter(), time.process_time()
        raw.optimizer.step()
        t2, c2 = time.perf_counter(), time.process_time()
        raw.module.lazy_reset_grad()
        parts["forward_backward_s"].append(t1 - t0)
        parts["forward_backward_cpu_s"].append(c1 - c0)
        parts["optimizer_s"].append(t2 - t1)
        parts["optimizer_cpu_s"].append(c2 - c1)
    return {k: _median(v) for k, v in parts.items()}


def bench_inference(w: Workload, *, rounds: int, calls: int, threads: int, device: str = "cpu", progress=None) -> dict:
    """Batch-1 latency (median, p99) and batch-256 throughput: onnxforge Session, raw ORT, PyTorch."""
    from onnxforge.runtime.ort.device import resolve_device
    from onnxforge.runtime.passes.compat import make_runtime_compatible
    from onnxforge.runtime.inference.session import Session, session_options

    torch = _torch()
    rt = ort()
    model = w.build()
    dev = resolve_device(device)
    ours = Session(model, dev, options=session_options(threads))
    raw = rt.InferenceSession(make_runtime_compatible(model).SerializeToString(), session_options(threads),
                              providers=list(dev.providers))
    net = w.torch_model(model).to(device).eval()
    rng = np.random.default_rng(3)
    big, _ = w.data(256, rng)
    one = {k: v[:1].copy() for k, v in big.items()}
    names = list(big)

    def contestants(feeds):
        tfeeds = [torch.from_numpy(feeds[k]) for k in names]

        def run_torch():
            with torch.inference_mode():
                out = net(*[t.to(device) for t in tfeeds])
                return out.cpu().numpy()

        return {"onnxforge": lambda: ours.run(feeds), "ort": lambda: raw.run(None, feeds), "torch": run_torch}

    result = {"workload": w.name, "family": w.family, "device": device, "threads": threads}
    lat = {k: [] for k in ("onnxforge", "ort", "torch")}
    single = contestants(one)
    for fn in single.values():
        for _ in range(20):
            fn()
    clock = time.perf_counter_ns
    order = list(single.items())
    shuffle = np.random.default_rng(5).permutation
    # call by call in turn, in a fresh random order each time (whoever runs right after another
    # framework finds its caches cold: no contestant may follow PyTorch more often than another)
    for r in range(rounds):
        for i in range(calls):
            for k in shuffle(3):
                who, fn = order[k]
                t0 = clock()
                fn()
                lat[who].append(clock() - t0)
        if progress is not None:
            progress()
    batch_ns = {k: [] for k in lat}
    batch = contestants(big)
    for fn in batch.values():
        for _ in range(10):
            fn()
    order = list(batch.items())
    for r in range(rounds):
        for i in range(max(3, calls // 40)):
            for k in shuffle(3):
                who, fn = order[k]
                t0 = clock()
                fn()
                batch_ns[who].append(clock() - t0)
    thr = {k: [256 / (float(np.median(v)) / 1e9)] for k, v in batch_ns.items()}
    for who in lat:
        us = np.array(lat[who]) / 1e3
        result[who] = {"latency_us_median": float(np.median(us)), "latency_us_p99": float(np.percentile(us, 99)),
                       "throughput_per_s": _median(thr[who])}
    for base in ("ort", "torch"):
        result[f"latency_ratio_vs_{base}"] = result[base]["latency_us_median"] / result["onnxforge"]["latency_us_median"]
        result[f"p99_ratio_vs_{base}"] = result[base]["latency_us_p99"] / result["onnxforge"]["latency_us_p99"]
        result[f"throughput_ratio_vs_{base}"] = result["onnxforge"]["throughput_per_s"] / result[base]["throughput_per_s"]
    return result


# -- peak memory: each training run in a fresh process ---------------------------------------------
def _rss_peak_kb() -> int:
    """This process's peak resident set (VmHWM; ru_maxrss where /proc is missing). Linux keeps
    ru_maxrss across exec, so a child would report its parent's peak; VmHWM starts afresh."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _rss_now_kb() -> int:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _memory_child(who: str, workload: str, steps: int, threads: int) -> dict:
    import tracemalloc

    w = workloads()[workload]
    rng = np.random.default_rng(1)
    inputs, y = w.data(steps * w.batch, rng)
    model = w.build()
    if who == "torch":
        torch = _torch()
        torch.set_num_threads(threads)
        twin = _TorchTrainer(w.torch_model(model), "cpu", list(inputs), w.ignore_index)
        before = _rss_now_kb()
        tracemalloc.start()
        twin.epoch(inputs, y, np.arange(len(y)), w.batch)
    else:
        from onnxforge.runtime import Trainer

        ort()
        training_api()
        before = _rss_now_kb()
        tracemalloc.start()
        with tempfile.TemporaryDirectory(prefix="onnxforge-bench-") as tmp:
            Trainer(model, Path(tmp) / "run", lr=LR, device="cpu", threads=threads, progress=False).fit(
                (inputs[list(inputs)[0]] if len(inputs) == 1 else inputs, y), epochs=1, batch_size=w.batch)
    _, py_peak = tracemalloc.get_traced_memory()
    peak = _rss_peak_kb()
    return {"peak_rss_mb": peak / 1024, "before_training_rss_mb": before / 1024,
            "training_rss_increase_mb": (peak - before) / 1024, "python_heap_peak_mb": py_peak / 2**20}


def bench_memory(workload: str, *, steps: int, threads: int) -> dict:
    """Peak resident memory of a training run of onnxforge and of PyTorch, each in a new process."""
    result = {"workload": workloads()[workload].name, "steps": steps}
    for who in ("onnxforge", "torch"):
        code = ("import json,sys; from onnxforge.runtime.benchmark.suite import _memory_child; "
                f"print(json.dumps(_memory_child({who!r}, {workload!r}, {steps}, {threads})))")
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeUnavailableError(f"the memory benchmark of {who} failed: {proc.stderr.strip().splitlines()[-1:]}")
        result[who] = json.loads(proc.stdout.strip().splitlines()[-1])
    result["peak_ratio_torch_over_ours"] = result["torch"]["peak_rss_mb"] / result["onnxforge"]["peak_rss_mb"]
    return result


# -- the whole run ---------------------------------------------------------------------------------
def _sizes(quick: bool) -> dict:
    if quick:
        return {"scale": 0.125, "rounds": 3, "calls": 300, "inf_rounds": 3, "mem_steps": 10}
    return {"scale": 1.0, "rounds": 7, "calls": 2000, "inf_rounds": 7, "mem_steps": 30}


def run_benchmarks(*, quick: bool = False, families=FAMILIES, threads: int | None = None, cuda: bool = True,
                   progress: bool = True) -> dict:
    """Run every benchmark; return a JSON-ready dict (see :func:`format_table`)."""
    torch = _torch()
    threads = int(threads or os.cpu_count() or 1)
    if threads < 1:
        raise ConfigError(f"threads must be a positive integer; got {threads!r}")
    unknown = [f for f in families if f not in FAMILIES]
    if unknown:
        raise ConfigError(f"unknown model family {unknown[0]!r}; families are: {', '.join(FAMILIES)}")
    torch.set_num_threads(threads)
    size = _sizes(quick)
    info = runtime_info()
    available = workloads(quick)
    result = {
        "quick": quick, "threads": threads, "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "versions": {"onnxruntime": info.version, "distribution": info.distribution, "torch": torch.__version__,
                     "numpy": np.__version__},
        "defaults": [], "training": [], "inference": [], "notes": [],
    }
    missing = [f for f in families if not any(w.family == f for w in available.values())]
    for f in missing:
        result["notes"].append(f"{f}: no builder in this checkout (onnxforge.graphs), skipped")
    chosen = [k for k, w in available.items() if w.family in families]
    from tqdm.auto import tqdm

    total = len(chosen) * 3 + 2
    bar = tqdm(total=total, desc="benchmarks", unit="part", disable=not progress, file=sys.stderr)

    def run_on(device: str) -> tuple[list, list]:
        train, infer = [], []
        for key in chosen:
            w = available[key]
            large = key == "mlp-large"
            bar.set_postfix_str(f"{device} train {key}")
            train.append(bench_training(w, steps=max(3, round(w.steps * size["scale"])), rounds=size["rounds"],
                                        threads=threads,
                                        device=device))
            bar.update(1)
            bar.set_postfix_str(f"{device} infer {key}")
            if not large:
                infer.append(bench_inference(w, rounds=size["inf_rounds"], calls=size["calls"], threads=threads,
                                             device=device))
            bar.update(1)
        return train, infer

    result["training"], result["inference"] = run_on("cpu")
    if "mlp-large" in chosen:  # the same large MLP with plain SGD in both frameworks
        w = available["mlp-large"]
        bar.set_postfix_str("cpu train mlp-large sgd")
        result["training"].append(bench_training(w, steps=max(3, round(w.steps * size["scale"])),
                                                 rounds=size["rounds"], threads=threads, optimizer="sgd"))
    # the headline: onnxforge at its default (threads="auto") against PyTorch at its default (every core)
    torch_default = os.cpu_count() or 1
    for key in [k for k in chosen if not k.endswith("-node")]:
        w = available[key]
        bar.set_postfix_str(f"defaults train {key}")
        result["defaults"].append(bench_training(w, steps=max(3, round(w.steps * size["scale"])), rounds=size["rounds"],
                                                 threads=threads, ours_threads="auto", torch_threads=torch_default))
        bar.update(1)
    bar.update(1)
    for large in [r for r in result["training"] if r["workload"].startswith("mlp 784")]:
        peak = large["gemm_peak"]
        who_all = ("onnxforge", "ort", "torch")
        split = large["step_split"]
        result["large_mlp" if large["optimizer"] == "adamw" else f"large_mlp_{large['optimizer']}"] = {
            "workload": large["workload"], "optimizer": large["optimizer"], "gemm_peak_gflops": peak["median_gflops"],
            "gemm_peak_cpu_gflops": peak["cpu_gflops"],
            **{f"{who}_gflops": large[who]["gflops"] for who in who_all},
            **{f"{who}_fraction_of_peak": large[who]["gflops"] / peak["median_gflops"] for who in who_all},
            **{f"{who}_cpu_fraction_of_peak": large[who]["cpu_gflops"] / peak["cpu_gflops"] for who in who_all},
            "ort_forward_backward_cpu_fraction_of_peak": split["forward_backward_cpu_gflops"] / peak["cpu_gflops"],
            "ort_optimizer_share_of_step_cpu": split["optimizer_cpu_s"] / (split["optimizer_cpu_s"]
                                                                           + split["forward_backward_cpu_s"]),
        }
    if "mlp" in families:
        bar.set_postfix_str("memory")
        result["memory"] = bench_memory("mlp-large", steps=size["mem_steps"], threads=threads)
    bar.update(1)
    from onnxforge.runtime.ort.device import cuda_works

    ok, why = cuda_works()
    if cuda and ok and torch.cuda.is_available():
        result["cuda"] = {}
        result["cuda"]["training"], result["cuda"]["inference"] = run_on("cuda")
    else:
        reason = why if not ok else ("PyTorch has no CUDA here" if not torch.cuda.is_available() else "--no-cuda was given")
        result["cuda"] = None
        result["notes"].append(f"CUDA section skipped: {reason}")
    bar.close()
    return result


# -- the table -------------------------------------------------------------------------------------
def _x(value) -> str:
    return "-" if value is None else f"{value:.2f}x"


def _n(value, unit="") -> str:
    if value is None:
        return "-"
    if value >= 100:
        return f"{value:,.0f}{unit}"
    return f"{value:.1f}{unit}"


def _section(lines, title, training, inference):
    lines.append(f"{title}")
    lines.append(f"  {'training (steps/s)':34} {'onnxforge':>10} {'raw ORT':>10} {'PyTorch':>10} {'vs ORT':>8} {'vs torch':>9}"
                 f" {'cpu: vs ORT':>12} {'vs torch':>9}")
    for r in training:
        label = f"{r['workload']} b{r['batch']}" + (" SGD" if r.get("optimizer") == "sgd" else "")
        lines.append(f"  {label:34} {_n(r['onnxforge']['steps_per_s']):>10} {_n(r['ort']['steps_per_s']):>10} "
                     f"{_n(r['torch']['steps_per_s']):>10} {_x(r['ratio_vs_ort']):>8} {_x(r['ratio_vs_torch']):>9}"
                     f" {_x(r.get('cpu_ratio_vs_ort')):>12} {_x(r.get('cpu_ratio_vs_torch')):>9}")
    lines.append(f"  {'inference':34} {'onnxforge':>10} {'raw ORT':>10} {'PyTorch':>10} {'vs ORT':>8} {'vs torch':>9}")
    for r in inference:
        for key, label, unit, ratio in (("latency_us_median", "b1 latency median (us)", "", "latency_ratio"),
                                        ("latency_us_p99", "b1 latency p99 (us)", "", "p99_ratio"),
                                        ("throughput_per_s", "b256 throughput (ex/s)", "", "throughput_ratio")):
            name = f"{r['workload']} {label}"
            lines.append(f"  {name:34} {_n(r['onnxforge'][key]):>10} {_n(r['ort'][key]):>10} {_n(r['torch'][key]):>10} "
                         f"{_x(r[f'{ratio}_vs_ort']):>8} {_x(r[f'{ratio}_vs_torch']):>9}")


def format_table(result: dict) -> str:
    """The human-readable table of a :func:`run_benchmarks` result."""
    v = result["versions"]
    lines = [f"onnxforge benchmarks ({'quick' if result['quick'] else 'full'}): {result['threads']} threads, "
             f"ONNX Runtime {v['onnxruntime']}, PyTorch {v['torch']}, numpy {v['numpy']}",
             "ratios are ours / baseline in speed: above 1.00x onnxforge is faster (latency: baseline time / ours);",
             "wall-clock medians of alternating rounds; 'cpu:' columns compare process CPU time per step (robust",
             "to other processes' load; exact with --threads 1, with more threads spinning workers count too)", ""]
    if result.get("defaults"):
        lines.append("CPU, each at its default: onnxforge threads='auto', PyTorch every core (the headline)")
        lines.append(f"  {'training (steps/s)':34} {'onnxforge':>10} {'threads':>7} {'PyTorch':>10} {'threads':>7} {'vs torch':>9}"
                     f" {'vs raw ORT':>10}")
        for r in result["defaults"]:
            label = f"{r['workload']} b{r['batch']}"
            lines.append(f"  {label:34} {_n(r['onnxforge']['steps_per_s']):>10} {r['ours_threads'] or '-':>7} "
                         f"{_n(r['torch']['steps_per_s']):>10} {r['torch_threads']:>7} {_x(r['ratio_vs_torch']):>9}"
                         f" {_x(r['ratio_vs_ort']):>10}")
        lines.append("")
    _section(lines, f"CPU, equal threads ({result['threads']} for all)", result["training"], result["inference"])
    for lm in (result.get("large_mlp"), result.get("large_mlp_sgd")):
        if not lm:
            continue
        lines.append("")
        lines.append(f"large MLP training ({lm['workload']}, batch 256, {lm['optimizer']}) vs numpy float32 GEMM peak "
                     f"{lm['gemm_peak_gflops']:.0f} GFLOP/s (measured between the same rounds; "
                     f"{lm['gemm_peak_cpu_gflops']:.0f} per CPU second)")
        lines.append(f"  onnxforge {lm['onnxforge_gflops']:.0f} GFLOP/s = {lm['onnxforge_fraction_of_peak']:.0%} of peak; "
                     f"raw ORT {lm['ort_gflops']:.0f} ({lm['ort_fraction_of_peak']:.0%}); "
                     f"PyTorch {lm['torch_gflops']:.0f} ({lm['torch_fraction_of_peak']:.0%})")
        lines.append(f"  by CPU time: onnxforge {lm['onnxforge_cpu_fraction_of_peak']:.0%}, raw ORT "
                     f"{lm['ort_cpu_fraction_of_peak']:.0%}, PyTorch {lm['torch_cpu_fraction_of_peak']:.0%} of peak; "
                     f"ORT forward+backward alone {lm['ort_forward_backward_cpu_fraction_of_peak']:.0%}, "
                     f"its {lm['optimizer']} step {lm['ort_optimizer_share_of_step_cpu']:.0%} of the step")
    mem = result.get("memory")
    if mem:
        o, t = mem["onnxforge"], mem["torch"]
        lines.append("")
        lines.append(f"peak memory of a training run ({mem['workload']}, {mem['steps']} steps, fresh process each)")
        lines.append(f"  onnxforge peak RSS {o['peak_rss_mb']:.0f} MB (+{o['training_rss_increase_mb']:.0f} MB while training); "
                     f"PyTorch {t['peak_rss_mb']:.0f} MB (+{t['training_rss_increase_mb']:.0f} MB); "
                     f"PyTorch / ours {mem['peak_ratio_torch_over_ours']:.2f}x")
    if result.get("cuda"):
        lines.append("")
        _section(lines, "CUDA (against PyTorch on CUDA)", result["cuda"]["training"], result["cuda"]["inference"])
    for note in result["notes"]:
        lines.append(f"note: {note}")
    return "\n".join(lines)
