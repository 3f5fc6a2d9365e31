"""The measurements: training steps/s, inference latency and throughput, and peak training memory
(each run in a fresh process), onnxforge and its peers alternating round after round."""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np

from onnxforge.runtime.benchmark.peers import (LR, WEIGHT_DECAY, RawTrainer, TorchTrainer, gemm_peak, median,
                                               raw_ort_missing)
from onnxforge.runtime.benchmark.workloads import Workload, optional_torch, torch_module, workloads
from onnxforge.runtime.errors import RuntimeUnavailableError
from onnxforge.runtime.inference.session import Session, session_options
from onnxforge.runtime.ort.device import resolve_device
from onnxforge.runtime.ort.distribution import ort, training_api
from onnxforge.runtime.passes.compat import RuntimeCompatible
from onnxforge.runtime.training.trainer import Trainer

__all__ = ["bench_training", "bench_inference", "bench_memory"]

# pause between contestants' training rounds: PyTorch's OpenMP workers spin for a while after a
# parallel region and would take a core from whoever runs next (seen: ORT at 0.4x right after it)
COOL_DOWN_S = 0.3


def _raw_trainer(trainer, model, tmp: Path, device: str, optimizer: str, x_names: list[str]) -> RawTrainer:
    """Raw ONNX Runtime driving the artifacts backend's graphs by hand: the Trainer's own when it runs
    on that backend, else (``auto`` took the onnx backend, e.g. for an LSTM) ones built for it here."""
    if trainer.backend_name == "artifacts":
        return RawTrainer(trainer.artifacts_dir, device, trainer.intra_op_threads, x_names)
    folder = tmp / "raw"
    backend = Trainer(model, folder, backend="artifacts", optimizer=optimizer, weight_decay=WEIGHT_DECAY, lr=LR,
                      device=device, threads=trainer.intra_op_threads, progress=False).backend
    backend.prepare(folder / "artifacts", trainer.intra_op_threads)
    return RawTrainer(folder / "artifacts", device, trainer.intra_op_threads, x_names)


def _ratios(result: dict, who_all) -> None:
    """``ratio_vs_X`` and ``cpu_ratio_vs_X`` for each baseline X that ran (None for one that did not)."""
    ours = result["onnxforge"]
    for base in ("ort", "torch"):
        other = result.get(base)
        result[f"ratio_vs_{base}"] = ours["steps_per_s"] / other["steps_per_s"] if other else None
        result[f"cpu_ratio_vs_{base}"] = ours["cpu_steps_per_s"] / other["cpu_steps_per_s"] if other else None


def bench_training(w: Workload, *, steps: int, rounds: int, threads: int, device: str = "cpu", progress=None,
                   optimizer: str = "adamw", ours_threads=None, torch_threads: int | None = None) -> dict:
    """Steps/s of onnxforge's Trainer, of the same artifacts driven by hand, and of PyTorch eager.

    ``ours_threads`` (default ``threads``) is the Trainer's setting, "auto" included; raw ORT
    runs with the count the Trainer resolved. ``torch_threads`` (default ``threads``) is PyTorch's.
    A baseline that cannot run here (PyTorch not installed, no onnxruntime-training for raw ORT) is
    left out of the result."""
    torch = optional_torch()
    if torch is not None:
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
        twin = TorchTrainer(w.torch_model(model), device, x_names, w.ignore_index, optimizer) if torch else None
        raw = {}
        who_all = ["onnxforge", *(["ort"] if raw_ort_missing() is None else []), *(["torch"] if twin else [])]
        times: dict[str, list[float]] = {who: [] for who in who_all}
        cpu: dict[str, list[float]] = {who: [] for who in who_all}
        peaks = []
        order_rng = np.random.default_rng(2)
        if twin is not None:
            twin.epoch(inputs, y, np.arange(min(n, 50 * w.batch)), w.batch)  # PyTorch's first steps are slow

        def after_epoch(record):
            # every contestant's measured round follows a warm-up round of its own (a round right
            # after another framework finds cold caches): onnxforge's odd epochs warm it up
            if record["epoch"] % 2:
                return
            if "ort" in times and "ort" not in raw:
                raw["ort"] = _raw_trainer(trainer, model, Path(tmp), device, optimizer, x_names)
            times["onnxforge"].append(record["seconds"])
            cpu["onnxforge"].append(record["cpu_seconds"])
            # alternate which baseline runs first
            pair = [(who, raw.get("ort") if who == "ort" else twin) for who in who_all[1:]]
            for who, contestant in (pair if len(times["onnxforge"]) % 2 == 1 else pair[::-1]):
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
        split = _step_split(raw["ort"], inputs, y, w.batch) if w.flops_per_example and "ort" in raw else None
    steps_per_epoch = -(-n // w.batch)
    if torch is not None:
        torch.set_num_threads(torch_before)
    result: dict[str, Any] = {"workload": w.name, "family": w.family, "batch": w.batch, "steps_per_round": steps_per_epoch,
              "rounds": rounds, "device": device, "threads": threads, "optimizer": optimizer,
              "ours_threads": trainer.intra_op_threads, "torch_threads": torch_threads or threads}
    for who, ts in times.items():
        result[who] = {"steps_per_s": steps_per_epoch / median(ts), "rounds_s": ts,
                       "cpu_steps_per_s": steps_per_epoch / max(median(cpu[who]), 1e-9)}
        if w.flops_per_example:
            result[who]["gflops"] = result[who]["steps_per_s"] * w.batch * w.flops_per_example / 1e9
            result[who]["cpu_gflops"] = result[who]["cpu_steps_per_s"] * w.batch * w.flops_per_example / 1e9
    # by process CPU time too: robust to other processes' load, meaningful with one thread (with
    # more, threads that spin while waiting count too)
    _ratios(result, who_all)
    if peaks:
        result["gemm_peak"] = {"median_gflops": median([p["median_gflops"] for p in peaks]),
                               "cpu_gflops": median([p["cpu_gflops"] for p in peaks]), "size": peaks[0]["size"]}
    if split and w.flops_per_example:
        flops = w.batch * w.flops_per_example
        result["step_split"] = {**split, "forward_backward_gflops": flops / split["forward_backward_s"] / 1e9,
                                "forward_backward_cpu_gflops": flops / split["forward_backward_cpu_s"] / 1e9}
    del torch
    return result


def _step_split(raw: RawTrainer, inputs: dict, y: np.ndarray, batch: int, steps: int = 5) -> dict:
    """Median seconds of raw ORT's forward+backward and of its optimizer step, apart."""
    feeds = [np.ascontiguousarray(inputs[k][:batch]) for k in raw.x_names]
    labels = np.ascontiguousarray(y[:batch])
    parts: dict[str, list[float]] = {"forward_backward_s": [], "forward_backward_cpu_s": [], "optimizer_s": [], "optimizer_cpu_s": []}
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
    return {k: median(v) for k, v in parts.items()}


def bench_inference(w: Workload, *, rounds: int, calls: int, threads: int, device: str = "cpu", progress=None) -> dict:
    """Batch-1 latency (median, p99) and batch-256 throughput: onnxforge Session, raw ORT, PyTorch
    (where installed)."""
    torch = optional_torch()
    rt = ort()
    model = w.build()
    dev = resolve_device(device)
    ours = Session(model, dev, options=session_options(threads))
    raw = rt.InferenceSession(RuntimeCompatible()(model).model.SerializeToString(), session_options(threads),
                              providers=list(dev.providers))
    net = w.torch_model(model).to(device).eval() if torch is not None else None
    rng = np.random.default_rng(3)
    big, _ = w.data(256, rng)
    one = {k: v[:1].copy() for k, v in big.items()}
    names = list(big)

    def contestants(feeds):
        found = {"onnxforge": lambda: ours.run(feeds), "ort": lambda: raw.run(None, feeds)}
        if net is None:
            return found
        tfeeds = [torch.from_numpy(feeds[k]) for k in names]

        def run_torch():
            with torch.inference_mode():
                out = net(*[t.to(device) for t in tfeeds])
                return out.cpu().numpy()

        return {**found, "torch": run_torch}

    result: dict[str, Any] = {"workload": w.name, "family": w.family, "device": device, "threads": threads}
    lat: dict[str, list[float]] = {k: [] for k in contestants(one)}
    single = contestants(one)
    for fn in single.values():
        for _ in range(20):
            fn()
    clock = time.perf_counter_ns
    order = list(single.items())
    shuffle = np.random.default_rng(5).permutation
    # call by call in turn, in a fresh random order each time (whoever runs right after another
    # framework finds its caches cold: no contestant may follow PyTorch more often than another)
    for _round in range(rounds):
        for _call in range(calls):
            for k in shuffle(len(order)):
                who, fn = order[k]
                t0 = clock()
                fn()
                lat[who].append(clock() - t0)
        if progress is not None:
            progress()
    batch_ns: dict[str, list[float]] = {k: [] for k in lat}
    batch = contestants(big)
    for fn in batch.values():
        for _ in range(10):
            fn()
    order = list(batch.items())
    for _round in range(rounds):
        for _call in range(max(3, calls // 40)):
            for k in shuffle(len(order)):
                who, fn = order[k]
                t0 = clock()
                fn()
                batch_ns[who].append(clock() - t0)
    thr = {k: [256 / (float(np.median(v)) / 1e9)] for k, v in batch_ns.items()}
    for who in lat:
        us = np.array(lat[who]) / 1e3
        result[who] = {"latency_us_median": float(np.median(us)), "latency_us_p99": float(np.percentile(us, 99)),
                       "throughput_per_s": median(thr[who])}
    for base in ("ort", "torch"):
        if base not in result:
            result.update({f"{k}_ratio_vs_{base}": None for k in ("latency", "p99", "throughput")})
            continue
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
    w = workloads()[workload]
    rng = np.random.default_rng(1)
    inputs, y = w.data(steps * w.batch, rng)
    model = w.build()
    if who == "torch":
        torch = torch_module()
        torch.set_num_threads(threads)
        twin = TorchTrainer(w.torch_model(model), "cpu", list(inputs), w.ignore_index)
        before = _rss_now_kb()
        tracemalloc.start()
        twin.epoch(inputs, y, np.arange(len(y)), w.batch)
    else:
        ort()
        if raw_ort_missing() is None:
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
    """Peak resident memory of a training run of onnxforge and of PyTorch (where installed), each in
    a new process."""
    result: dict[str, Any] = {"workload": workloads()[workload].name, "steps": steps}
    for who in ("onnxforge", *(("torch",) if optional_torch() is not None else ())):
        code = ("import json,sys; from onnxforge.runtime.benchmark.measure import _memory_child; "
                f"print(json.dumps(_memory_child({who!r}, {workload!r}, {steps}, {threads})))")
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeUnavailableError(f"the memory benchmark of {who} failed: {proc.stderr.strip().splitlines()[-1:]}")
        result[who] = json.loads(proc.stdout.strip().splitlines()[-1])
    result["peak_ratio_torch_over_ours"] = (result["torch"]["peak_rss_mb"] / result["onnxforge"]["peak_rss_mb"]
                                            if "torch" in result else None)
    return result
