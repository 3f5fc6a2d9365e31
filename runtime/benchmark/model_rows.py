"""The ``--models`` rows: real architectures (torchvision's ConvNets, Hugging Face transformers, from
tiny configs, see :mod:`.zoo.models`) exported with ``torch.onnx.export`` and trained on the onnx
backend against PyTorch eager and ``torch.compile`` on the same weights, batches, loss
(cross-entropy) and optimizer, in one process, contestants alternating round after round
(:func:`~.timing.alternate`), the process pinned to ``threads`` cores.

Nothing here ends in a traceback: a model that cannot be built, exported or trained gets a row
whose ``error`` says why; a contestant that cannot run (``torch.compile`` without a C compiler, a
step that fails) is left out of its row with a note, and the others still run. JAX has no twin of
a PyTorch model, which the row's notes say."""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path

import numpy as np

from onnxforge.runtime.benchmark.backend_rows import pinned
from onnxforge.runtime.benchmark.jax_twin import jax_missing
from onnxforge.runtime.benchmark.peers import LR, WEIGHT_DECAY, TorchTrainer, torch_compile_missing
from onnxforge.runtime.benchmark.profile import profile_onnx_step
from onnxforge.runtime.benchmark.timing import alternate
from onnxforge.runtime.benchmark.workloads import optional_torch
from onnxforge.runtime.benchmark.zoo.export import export, first_output
from onnxforge.runtime.benchmark.zoo.models import MODELS, build, missing
from onnxforge.runtime.training.trainer import Trainer

__all__ = ["MODEL_CONTESTANTS", "bench_model"]

MODEL_CONTESTANTS = ("onnx", "torch", "torch.compile", "jax")
BATCHES = 4  # distinct batches each contestant cycles through


def _why(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0][:300]}"


def _torch_step(module, names, optimizer: str, compile: bool):
    twin = TorchTrainer(copy.deepcopy(module), "cpu", list(names), None, optimizer, compile=compile)
    return lambda xs, y, lr: twin.step(xs, y)


def _onnx_step(model, tmp: Path, optimizer: str, threads: int):
    backend = Trainer(model, tmp / "onnx-run", backend="onnx", loss="cross-entropy", optimizer=optimizer,
                      weight_decay=WEIGHT_DECAY, lr=LR, device="cpu", threads=threads, progress=False).backend
    backend.prepare(tmp / "onnx-run" / "onnx", threads)
    return lambda xs, y, lr: backend.train_step(xs, y, lr)


def bench_model(name: str, *, optimizer: str = "adamw", seconds: float, rounds: int, threads: int,
                profile_steps: int = 0, compile: bool = True) -> dict:
    """One row: steps/s of each contestant that runs on model ``name``, the onnx backend's ratio to
    each (above 1.00x the onnx backend is faster), and notes; with ``profile_steps``, the onnx
    backend's step profiled by op type (``profile``); ``compile=False`` leaves torch.compile out."""
    spec = MODELS[name]
    row: dict = {"model": name, "summary": spec.summary, "batch": spec.batch, "input": list(spec.input),
                 "threads": threads, "optimizer": optimizer, "exporter": spec.exporter, "rounds": rounds,
                 "seconds_per_round": seconds, "source": None, "steps_per_s": {}, "onnx_ratio": {}, "notes": [],
                 "error": None}
    why = missing(name)
    if why is not None:
        row["error"] = why
        return row
    torch = optional_torch()
    assert torch is not None  # missing() said so
    torch.set_num_threads(threads)
    stage = "building the model"
    try:
        built = build(name)
        row["source"] = built.source
        rng = np.random.default_rng(0)
        data = [built.data(rng) for _ in range(BATCHES)]
        names = list(data[0][0])
        stage = f"export ({spec.exporter})"
        model = export(copy.deepcopy(built.module).eval(), data[0][0], spec.exporter)
        module = first_output(built.module, names)
    except Exception as exc:  # noqa: BLE001 - this model's row says why; the other models still run
        row["error"] = f"{stage} failed: {_why(exc)}"
        return row
    batches = [([inputs[n] for n in names], y) for inputs, y in data]
    failed: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="onnxforge-bench-model-") as tmp, pinned(threads):
        runs = {}
        makers = {"onnx": lambda: _onnx_step(model, Path(tmp), optimizer, threads),
                  "torch": lambda: _torch_step(module, names, optimizer, False),
                  "torch.compile": lambda: _torch_step(module, names, optimizer, True)}
        compile_missing = torch_compile_missing() if compile else (
            "left out with --quick (compiling a model takes minutes on one thread); run without --quick for it")
        if compile_missing is not None:
            del makers["torch.compile"]
            row["notes"].append(f"torch.compile skipped: {compile_missing}")
        for who, make in makers.items():
            try:
                runs[who] = make()
            except Exception as exc:  # noqa: BLE001 - reported in the row, the others run
                failed[who] = _why(exc)
        rates = alternate(runs, batches, seconds=seconds, rounds=rounds, failed=failed)
        if profile_steps and "onnx" in rates:
            try:
                row["profile"] = profile_onnx_step(model, batches, optimizer=optimizer, threads=threads,
                                                   weight_decay=WEIGHT_DECAY, lr=LR, steps=profile_steps)
            except Exception as exc:  # noqa: BLE001
                row["notes"].append(f"profile failed: {_why(exc)}")
    row["notes"] += [f"{who} failed: {why}" for who, why in failed.items()]
    jax_why = jax_missing()
    row["notes"].append(f"JAX skipped: {jax_why}" if jax_why else
                        "JAX skipped: no JAX twin of a PyTorch model (it would be the architecture rewritten in JAX)")
    row["steps_per_s"] = {k: rates[k] for k in MODEL_CONTESTANTS if k in rates}
    ours = rates.get("onnx")
    row["onnx_ratio"] = {k: ours / v for k, v in row["steps_per_s"].items() if ours and v and k != "onnx"}
    return row
