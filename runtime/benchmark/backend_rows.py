"""The training backends' rows: the ``onnx`` and ``artifacts`` backends beside raw ONNX Runtime,
PyTorch eager, ``torch.compile`` and JAX ``jit``, on the step timer's workloads.

Each row is one call of :func:`onnxforge.runtime.benchmark.timing.time_backends`: the
same model, batches and learning rate for everyone, contestants alternating round after round in
this process, the median of the rounds. The peers come in as its ``others``: twins with the ONNX
initialisers copied in. A peer that cannot run here (JAX not installed, no C compiler for
``torch.compile``, no onnxruntime-training for raw ORT) is left out with a note. One-thread rows
run with the process pinned to one core: XLA sizes its thread pool once per process, so JAX could
otherwise use every core where the others use one."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from onnxforge.runtime.benchmark.jax_twin import JaxTwin, jax_missing
from onnxforge.runtime.benchmark.peers import RawTrainer, TorchTrainer, raw_ort_missing, torch_compile_missing
from onnxforge.runtime.benchmark.workloads import TORCH_MISSING, TWINS, optional_torch, torch_module
from onnxforge.runtime.training.backends import BACKENDS
from onnxforge.runtime.benchmark.timing import WORKLOADS, time_backends
from onnxforge.runtime.training.trainer import Trainer

__all__ = ["BACKEND_ROWS", "CONTESTANTS", "PEERS", "bench_backends", "missing_contestants", "pinned"]

# (step timer's workload, family, optimizer): the small MLP, ConvNet on one thread, the LSTM and
# the large MLP on two (the timer's own thread counts)
BACKEND_ROWS = (("mlp_small", "mlp", "adamw"), ("mlp_small", "mlp", "sgd"), ("convnet", "convnet", "adamw"),
                ("lstm", "lstm", "adamw"), ("mlp_large", "mlp", "adamw"), ("mlp_large", "mlp", "sgd"))
PEERS = ("ort", "torch", "torch.compile", "jax")
CONTESTANTS = ("onnx", "artifacts", *PEERS)


def missing_contestants() -> dict[str, str]:
    """Contestant -> why it cannot run here (absent: it can)."""
    reasons = {b: BACKENDS[b].available() for b in ("onnx", "artifacts")}
    reasons.update({"ort": raw_ort_missing(), "torch": None if optional_torch() is not None else TORCH_MISSING,
                    "torch.compile": torch_compile_missing(), "jax": jax_missing()})
    return {k: v for k, v in reasons.items() if v is not None}


def _torch_factory(family: str, compile: bool):
    def make(model, optimizer, threads, weight_decay):
        torch_module().set_num_threads(threads)
        twin = TorchTrainer(TWINS[family](model), "cpu", ["x"], None, optimizer, compile=compile)
        return lambda x, y, lr: twin.step([x], y)
    return make


def _jax_factory(family: str):
    def make(model, optimizer, threads, weight_decay):
        twin = JaxTwin(TWINS[family](model), optimizer, weight_decay)
        return lambda x, y, lr: twin.step([x], y, lr)
    return make


def _raw_factory(tmp: Path):
    def make(model, optimizer, threads, weight_decay):
        folder = tmp / "raw"
        backend = Trainer(model, folder, backend="artifacts", optimizer=optimizer, weight_decay=weight_decay,
                          device="cpu", threads=threads, progress=False).backend
        backend.prepare(folder / "artifacts", threads)
        raw = RawTrainer(folder / "artifacts", "cpu", threads, ["x"])
        return lambda x, y, lr: raw.step([x], y)
    return make


@contextlib.contextmanager
def pinned(threads: int):
    """Every thread of this process on ``threads`` of its cores while the row runs (Linux)."""
    if not hasattr(os, "sched_getaffinity"):
        yield
        return
    before = os.sched_getaffinity(0)
    cores = set(sorted(before)[:threads])

    def pin(cpus):
        for tid in os.listdir("/proc/self/task"):
            with contextlib.suppress(OSError):
                os.sched_setaffinity(int(tid), cpus)

    if len(cores) < len(before):
        pin(cores)
    try:
        yield
    finally:
        pin(before)


def _label(name: str) -> str:
    family, kw, _, _ = WORKLOADS[name]
    if family == "mlp":
        return "mlp " + "-".join(str(v) for v in (kw["inputs"], *kw["hidden"], kw["classes"]))
    if family == "convnet":
        return f"convnet {'x'.join(map(str, kw['input_shape']))} {'-'.join(map(str, kw['channels']))}"
    return f"lstm T20 in{kw['inputs']} h{kw['hidden']} LSTM op"


def bench_backends(name: str, optimizer: str, *, seconds: float, rounds: int, skip: dict,
                   threads: int | None = None) -> dict:
    """One row: steps/s of every contestant not in ``skip`` on workload ``name``, and the ``onnx``
    backend's ratio to each (above 1.00x the onnx backend is faster); ``threads`` (``bench
    --threads``) overrides the workload's own thread count."""
    family, _, batch, own_threads = WORKLOADS[name]
    threads = threads or own_threads
    with tempfile.TemporaryDirectory(prefix="onnxforge-bench-") as tmp:
        factories = {"ort": _raw_factory(Path(tmp)), "torch": _torch_factory(family, False),
                     "torch.compile": _torch_factory(family, True), "jax": _jax_factory(family)}
        others = {k: f for k, f in factories.items() if k not in skip}
        backends = tuple(b for b in ("onnx", "artifacts") if b not in skip)
        with pinned(threads):
            rates = time_backends(name, backends, optimizer=optimizer, seconds=seconds, rounds=rounds,
                                  threads=threads, others=others)
    ours = rates.get("onnx")
    return {"workload": _label(name), "key": name, "family": family, "optimizer": optimizer, "batch": batch,
            "threads": threads, "rounds": rounds, "seconds_per_round": seconds, "steps_per_s": rates,
            "onnx_ratio": {k: ours / v for k, v in rates.items() if ours and v and k != "onnx"}}
