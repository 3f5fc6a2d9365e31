"""Timing the training backends on the benchmark's workloads (for ``onnxforge bench`` and the notes).

:func:`time_backends` builds each workload, makes one backend of each name through the
``Trainer`` (so the same spec, data checks and thread choice), and times ``train_step`` on the
same batches, the backends alternating in one process, ``rounds`` rounds, each starting one
contestant later, so that none always runs right after the same one (a session whose intra-op
workers spin after a run, as the artifacts backend's do, slows whoever runs next on 2 cores: the
large MLP's steps right after it ran 1.4x slower); it returns the median steps/s of each.
Compare only within one call: the machine is shared. ``others`` adds contestants
that are not backends (PyTorch eager on a twin with the same weights, which the benchmark builds),
timed in the same rounds. Both ONNX Runtime backends ran 2-4x slower on the small MLP in runs
with a PyTorch contestant than in runs without (PyTorch's OpenMP workers spin after a parallel
region; the benchmark pauses between contestants for that): compare ratios within one call only.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from onnxforge import graphs
from onnxforge.runtime.training.backends import BACKENDS
from onnxforge.runtime.training.trainer import Trainer

__all__ = ["WORKLOADS", "workload", "time_backends"]

# name -> (builder kwargs, batch, intra-op threads)
WORKLOADS: dict[str, tuple[str, dict[str, Any], int, int]] = {
    "mlp_small": ("mlp", dict(inputs=64, hidden=[128], classes=10), 64, 1),
    "mlp_large": ("mlp", dict(inputs=784, hidden=[1024, 1024], classes=10), 256, 2),
    "convnet": ("convnet", dict(input_shape=(1, 8, 8), channels=(16, 32), classes=10), 64, 1),
    "lstm": ("lstm", dict(inputs=16, hidden=64, classes=10), 64, 2),
}


def workload(name: str, seed: int = 0):
    """``(model, x, y, batch, threads)`` of a workload: the model and 8 batches of random data."""
    builder, kwargs, batch, threads = WORKLOADS[name]
    rng = np.random.default_rng(seed)
    if builder == "mlp":
        model = graphs.mlp(kwargs["inputs"], kwargs["hidden"], kwargs["classes"], seed=seed)
        x = rng.standard_normal((batch * 8, kwargs["inputs"])).astype(np.float32)
    elif builder == "convnet":
        model = graphs.convnet(kwargs["input_shape"], channels=kwargs["channels"], classes=kwargs["classes"], seed=seed)
        x = rng.standard_normal((batch * 8, *kwargs["input_shape"])).astype(np.float32)
    else:
        model = graphs.lstm(kwargs["inputs"], hidden=kwargs["hidden"], classes=kwargs["classes"], seed=seed)
        x = rng.standard_normal((batch * 8, 20, kwargs["inputs"])).astype(np.float32)
    return model, x, rng.integers(0, 10, batch * 8), batch, threads


def time_backends(name: str, backends=("artifacts", "onnx"), *, optimizer: str = "adamw", seconds: float = 1.0,
                  rounds: int = 3, threads: int | None = None, weight_decay: float = 0.01,
                  others: dict | None = None) -> dict:
    """Median steps/s of each backend in ``backends`` on workload ``name`` (alternating rounds of
    about ``seconds`` each, after a warm-up). Backends that cannot run here are left out.

    ``others`` adds contestants that are not backends (PyTorch eager, say: the benchmark owns the
    twins): name -> ``factory(model, optimizer, threads, weight_decay)`` returning ``step(x, y, lr)``;
    they get the same model, batches and rounds."""
    model, x, y, batch, default_threads = workload(name)
    threads = default_threads if threads is None else threads
    batches = [(x[i:i + batch], y[i:i + batch]) for i in range(0, len(x), batch)]
    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        for b in backends:
            if BACKENDS[b].available() is not None:
                continue
            backend = Trainer(model, Path(tmp) / b, backend=b, optimizer=optimizer, weight_decay=weight_decay,
                              device="cpu", threads=threads, progress=False).backend
            backend.prepare(Path(tmp) / b / "artifacts", threads)
            runs[b] = lambda x, y, lr, backend=backend: backend.train_step([x], y, lr)
        for o, factory in (others or {}).items():
            runs[o] = factory(model, optimizer, threads, weight_decay)
        for step in runs.values():
            for bx, by in batches[:3]:  # warm-up: builds, sessions, first allocations
                step(bx, by, 1e-3)
        rates: dict[str, list[float]] = {b: [] for b in runs}
        order = list(runs.items())
        for r in range(rounds):
            for b, step in order[r % len(order):] + order[:r % len(order)]:
                n, t0 = 0, time.perf_counter()
                while time.perf_counter() - t0 < seconds:
                    bx, by = batches[n % len(batches)]
                    step(bx, by, 1e-3)
                    n += 1
                rates[b].append(n / (time.perf_counter() - t0))
    return {b: statistics.median(r) for b, r in rates.items()}
