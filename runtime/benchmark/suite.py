"""Benchmarks: onnxforge against raw ONNX Runtime and PyTorch eager (and, for the training
backends' rows, ``torch.compile`` and JAX ``jit`` where installed), in one process run.

Every comparison uses the same model (the PyTorch twin gets the ONNX initialisers copied in), the
same data and batches, the same optimizer (AdamW, betas 0.9/0.999, eps 1e-8, weight decay 0.01,
constant learning rate) and the same thread count. The contestants run alternately, round after
round, and each figure is the median over rounds, so a short slowdown of the machine hits all of
them alike. Ratios are always "ours / baseline" in speed (above 1 means onnxforge is faster).

``run_benchmarks`` returns a JSON-ready dict; ``format_table`` prints it. Without PyTorch (the
``torch`` extra; none on CPython 3.13's CI leg) or without onnxruntime-training (raw ORT's training
rows) the other contestants still run, and the notes say which peers are missing and how to add them.
"""

from __future__ import annotations

import os
import sys

from typing import Any

import numpy as np
from tqdm.auto import tqdm

from onnxforge.runtime.benchmark.backend_rows import BACKEND_ROWS, bench_backends, missing_contestants
from onnxforge.runtime.benchmark.model_rows import bench_model
from onnxforge.runtime.benchmark.measure import bench_inference, bench_memory, bench_training
from onnxforge.runtime.benchmark.peers import gemm_peak, raw_ort_missing
from onnxforge.runtime.benchmark.report import format_table
from onnxforge.runtime.benchmark.workloads import TORCH_MISSING, FAMILIES, Workload, optional_torch, workloads
from onnxforge.runtime.errors import ConfigError
from onnxforge.runtime.ort.device import cuda_works
from onnxforge.runtime.ort.distribution import runtime_info

__all__ = ["FAMILIES", "Workload", "workloads", "run_benchmarks", "format_table", "gemm_peak"]


def _sizes(quick: bool) -> dict:
    if quick:
        return {"scale": 0.125, "rounds": 3, "calls": 300, "inf_rounds": 3, "mem_steps": 10, "backend_seconds": 0.3}
    return {"scale": 1.0, "rounds": 7, "calls": 2000, "inf_rounds": 7, "mem_steps": 30, "backend_seconds": 1.0}


def run_benchmarks(*, quick: bool = False, families=FAMILIES, threads: int | None = None, cuda: bool = True,
                   progress: bool = True, models=(), profile_steps: int = 0) -> dict:
    """Run the benchmarks of ``families`` (none: skip them) and of the real architectures ``models``
    (names in :data:`~.zoo.models.MODELS`; with ``profile_steps``, each one's onnx-backend step
    profiled); return a JSON-ready dict (see :func:`format_table`)."""
    torch = optional_torch()
    given_threads = threads  # --threads: every row, the backends' rows too; else each row's own count
    threads = int(threads or os.cpu_count() or 1)
    if threads < 1:
        raise ConfigError(f"threads must be a positive integer; got {threads!r}")
    unknown = [f for f in families if f not in FAMILIES]
    if unknown:
        raise ConfigError(f"unknown model family {unknown[0]!r}; families are: {', '.join(FAMILIES)}")
    if torch is not None:
        torch.set_num_threads(threads)
    size = _sizes(quick)
    info = runtime_info()
    available = workloads(quick)
    result: dict[str, Any] = {
        "quick": quick, "threads": threads, "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "versions": {"onnxruntime": info.version, "distribution": info.distribution, "torch": torch.__version__ if torch else None,
                     "numpy": np.__version__},
        "defaults": [], "training": [], "inference": [], "backends": [], "models": [], "notes": [],
    }
    missing = [f for f in families if not any(w.family == f for w in available.values())]
    for f in missing:
        result["notes"].append(f"{f}: no builder in this checkout (onnxforge.graphs), skipped")
    if torch is None:
        result["notes"].append(f"PyTorch columns are empty: {TORCH_MISSING}")
    raw_missing = raw_ort_missing()
    if raw_missing is not None and families:
        result["notes"].append(f"raw ORT training columns are empty ({raw_missing}); onnxruntime-training 1.19.2 comes "
                               "with pip install 'onnxforge[cpu]' on CPython 3.10-3.12")
    chosen = [k for k, w in available.items() if w.family in families]
    rows = [r for r in BACKEND_ROWS if r[1] in families]
    total = (len(chosen) * 3 + 2 + len(rows) if families else 0) + len(models)
    bar = tqdm(total=total, desc="benchmarks", unit="part", disable=not progress, file=sys.stderr)
    if families:
        _run_families(result, bar, available, chosen, rows, families, threads, size, torch, cuda, given_threads)
    for name in models:
        bar.set_postfix_str(f"model {name}")
        result["models"].append(bench_model(name, seconds=size["backend_seconds"], rounds=size["rounds"],
                                            threads=threads, profile_steps=profile_steps, compile=not quick))
        bar.update(1)
    bar.close()
    return result


def _run_families(result, bar, available, chosen, rows, families, threads, size, torch, cuda, given_threads) -> None:
    """The model families' sections: equal threads, defaults, large MLP, memory, backends, CUDA."""

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
        who_all = [who for who in ("onnxforge", "ort", "torch") if who in large]
        split = large.get("step_split")
        result["large_mlp" if large["optimizer"] == "adamw" else f"large_mlp_{large['optimizer']}"] = {
            "workload": large["workload"], "optimizer": large["optimizer"], "gemm_peak_gflops": peak["median_gflops"],
            "gemm_peak_cpu_gflops": peak["cpu_gflops"],
            **{f"{who}_gflops": large[who]["gflops"] for who in who_all},
            **{f"{who}_fraction_of_peak": large[who]["gflops"] / peak["median_gflops"] for who in who_all},
            **{f"{who}_cpu_fraction_of_peak": large[who]["cpu_gflops"] / peak["cpu_gflops"] for who in who_all},
            "ort_forward_backward_cpu_fraction_of_peak": (split["forward_backward_cpu_gflops"] / peak["cpu_gflops"]
                                                          if split else None),
            "ort_optimizer_share_of_step_cpu": (split["optimizer_cpu_s"] / (split["optimizer_cpu_s"]
                                                                            + split["forward_backward_cpu_s"])
                                                if split else None),
        }
    if "mlp" in families:
        bar.set_postfix_str("memory")
        result["memory"] = bench_memory("mlp-large", steps=size["mem_steps"], threads=threads)
    bar.update(1)
    skip = missing_contestants()
    result["notes"].extend(f"training backends' rows: {who} skipped ({why})" for who, why in skip.items())
    for name, _, optimizer in rows if "onnx" not in skip else ():
        bar.set_postfix_str(f"backends {name} {optimizer}")
        result["backends"].append(bench_backends(name, optimizer, seconds=size["backend_seconds"],
                                                 rounds=size["rounds"], skip=skip, threads=given_threads))
        bar.update(1)
    ok, why = cuda_works()
    torch_cuda = torch is not None and torch.cuda.is_available()
    if cuda and ok and (torch is None or torch_cuda):
        result["cuda"] = {}
        result["cuda"]["training"], result["cuda"]["inference"] = run_on("cuda")
    else:
        reason = why if not ok else ("PyTorch has no CUDA here" if not torch_cuda else "--no-cuda was given")
        result["cuda"] = None
        result["notes"].append(f"CUDA section skipped: {reason}")
