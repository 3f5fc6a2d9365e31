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

__all__ = ["WORKLOADS", "workload", "time_backends", "alternate"]

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
        return alternate(runs, batches, seconds=seconds, rounds=rounds)


def alternate(runs: dict, batches: list, *, seconds: float, rounds: int, warmup: int = 3,
              failed: dict | None = None) -> dict:
    """Median steps/s of each ``step(x, y, lr)`` in ``runs`` over ``batches`` (pairs of arrays, or of
    a list of arrays and targets): ``warmup`` steps each, then ``rounds`` rounds of about ``seconds``
    each, the order rotating one place per round. With ``failed`` (a dict), a contestant whose step
    raises is dropped and ``failed[name]`` says why (``ExceptionType: first line``); without, it raises."""
    runs = dict(runs)

    def guarded(name, call):
        try:
            call()
            return True
        except Exception as exc:  # one contestant's failure is reported (re-raised without failed), the others go on
            if failed is None:
                raise
            failed[name] = f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:300]}"
            runs.pop(name, None)
            return False

    def warm(step):
        for bx, by in batches[:warmup]:  # builds, sessions, compilation, first allocations
            step(bx, by, 1e-3)

    for name, step in list(runs.items()):
        guarded(name, lambda step=step: warm(step))
    rates: dict[str, list[float]] = {b: [] for b in runs}
    for r in range(rounds):
        order = list(runs.items())
        for b, step in order[r % max(1, len(order)):] + order[:r % max(1, len(order))]:
            def one_round(step=step, b=b):
                n, t0 = 0, time.perf_counter()
                while time.perf_counter() - t0 < seconds:
                    bx, by = batches[n % len(batches)]
                    step(bx, by, 1e-3)
                    n += 1
                rates[b].append(n / (time.perf_counter() - t0))
            if not guarded(b, one_round):
                rates.pop(b, None)
    return {b: statistics.median(r) for b, r in rates.items() if r}
