"""What onnxforge is measured against: the same training artifacts driven by hand with
``onnxruntime.training.api`` (raw ONNX Runtime), PyTorch eager (or its model through
``torch.compile``) with the same optimizer, and the machine's numpy GEMM peak. JAX's twin is in
:mod:`.jax_twin`."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import numpy as np

from onnxforge.runtime.benchmark.workloads import TORCH_MISSING, optional_torch, torch_module
from onnxforge.runtime.inference.session import session_options
from onnxforge.runtime.ort.distribution import training_api

__all__ = ["LR", "WEIGHT_DECAY", "RawTrainer", "TorchTrainer", "gemm_peak", "median", "torch_compile_missing",
           "raw_ort_missing"]

LR = 1e-3
WEIGHT_DECAY = 0.01


def median(values):
    return float(np.median(values)) if len(values) else None


def _threads_guard(threads: int):
    """Limit numpy's BLAS to ``threads`` while measuring its GEMM peak (threadpoolctl when present)."""
    try:
        from threadpoolctl import threadpool_limits

        return threadpool_limits(limits=threads, user_api="blas")
    except ImportError:  # pragma: no cover - numpy then uses its own default
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
    return {"median_gflops": median(speeds), "best_gflops": max(speeds), "cpu_gflops": median(cpu_speeds),
            "size": size}


class RawTrainer:
    """The training artifacts onnxforge wrote, driven by hand with onnxruntime.training.api."""

    def __init__(self, artifacts: Path, device: str, threads: int, x_names: list[str]):
        _, _, api = training_api()
        self.state = api.CheckpointState.load_checkpoint(str(artifacts / "checkpoint"))
        self.module = api.Module(str(artifacts / "training_model.onnx"), self.state, str(artifacts / "eval_model.onnx"),
                                 device=device, session_options=session_options(threads))
        self.optimizer = api.Optimizer(str(artifacts / "optimizer_model.onnx"), self.module)
        self.optimizer.set_learning_rate(LR)
        self.module.train()
        self.x_names = [n for n in self.module.input_names() if n in x_names]

    def epoch(self, inputs: dict, y: np.ndarray, order: np.ndarray, batch: int) -> tuple[float, float]:
        module, optimizer = self.module, self.optimizer
        t0, c0 = time.perf_counter(), time.process_time()
        xs = [inputs[k][order] for k in self.x_names]
        ys = y[order]
        for s in range(0, len(order), batch):
            module(*[x[s : s + batch] for x in xs], ys[s : s + batch])
            optimizer.step()
            module.lazy_reset_grad()
        return time.perf_counter() - t0, time.process_time() - c0

    def step(self, xs: list[np.ndarray], y: np.ndarray) -> None:
        self.module(*xs, y)
        self.optimizer.step()
        self.module.lazy_reset_grad()


def raw_ort_missing() -> str | None:
    """Why raw ONNX Runtime training (``onnxruntime.training.api``) cannot run here, or None."""
    try:
        training_api()
    except Exception as exc:  # noqa: BLE001 - the one-line reason the distribution gives
        return (str(exc).splitlines() or [type(exc).__name__])[0]
    return None


def torch_compile_missing() -> str | None:
    """Why ``torch.compile`` (inductor, which builds C++ for the CPU) cannot run here, or None."""
    import shutil

    torch = optional_torch()
    if torch is None:
        return TORCH_MISSING
    if not hasattr(torch, "compile"):
        return f"PyTorch {torch.__version__} has no torch.compile"
    if not any(shutil.which(c) for c in ("cc", "gcc", "clang", "g++")):
        return "torch.compile's inductor needs a C/C++ compiler, and none is on PATH"
    return None


class TorchTrainer:
    """PyTorch eager on a twin, or with ``compile`` its model through ``torch.compile`` (the
    loss, backward and optimizer step stay eager, as a user who compiles the model gets them)."""

    def __init__(self, net, device: str, x_names: list[str], ignore_index: int | None = None,
                 optimizer: str = "adamw", compile: bool = False):
        torch = torch_module()
        self.torch = torch
        self.device = device
        self.net = net.to(device).train()
        self.forward = torch.compile(self.net) if compile else self.net
        if optimizer == "sgd":
            self.optimizer = torch.optim.SGD(self.net.parameters(), lr=LR)
        else:
            self.optimizer = torch.optim.AdamW(self.net.parameters(), lr=LR, betas=(0.9, 0.999), eps=1e-8,
                                               weight_decay=WEIGHT_DECAY)
        self.loss = torch.nn.CrossEntropyLoss(ignore_index=-100 if ignore_index is None else ignore_index)
        self.x_names = x_names

    def epoch(self, inputs: dict, y: np.ndarray, order: np.ndarray, batch: int) -> tuple[float, float]:
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

    def step(self, xs: list[np.ndarray], y: np.ndarray) -> float:
        """One step on numpy batches (through ``torch.compile`` when built with ``compile``)."""
        torch = self.torch
        out = self.forward(*[torch.from_numpy(x).to(self.device) for x in xs])
        loss = self.loss(out.reshape(-1, out.shape[-1]), torch.from_numpy(y).to(self.device).reshape(-1))
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return loss.item()
