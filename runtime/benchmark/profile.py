"""Where the onnx backend's training step spends its time, by op type and by node, from ONNX
Runtime's own profiler (``SessionOptions.enable_profiling``): the step model is the backend's (the
same graph, thread count and session settings as in the timed rows), profiled over ``steps``
steps after ``warmup`` unprofiled ones (the first run's allocations and kernel choices left out).

The times are the kernels' own (``*_kernel_time`` events of category ``Node``); their sum is a
little below the step's wall time (binding, the session's own work between kernels)."""

from __future__ import annotations

import json
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import cast

from onnxforge.runtime.training.backends.onnx import OnnxBackend
from onnxforge.runtime.training.trainer import Trainer

__all__ = ["profile_onnx_step", "summarize_profile", "phase_of"]

# the step graph's node name prefixes (runtime/training/stepgraph): the backward pass, the optimizer's update
PHASES = (("grad/", "backward"), ("update/", "optimizer"), ("new/", "optimizer"), ("pack/", "optimizer"))


def phase_of(node: str) -> str:
    """``forward`` (the model and its loss), ``backward`` or ``optimizer``, from a step node's name."""
    return next((phase for prefix, phase in PHASES if node.startswith(prefix)), "forward")


def _profiled(prefix: str):
    class ProfiledOnnxBackend(OnnxBackend):
        """The onnx backend with ONNX Runtime's profiler on in its step session."""

        def _options(self):
            options = super()._options()
            options.enable_profiling = True
            options.profile_file_prefix = prefix
            return options

    return ProfiledOnnxBackend


def summarize_profile(events: list, skip_runs: int = 0, top: int = 12) -> dict:
    """Per-op-type and top-node kernel times of an ONNX Runtime profile (its JSON events), per run,
    leaving out the node events of the first ``skip_runs`` runs (``model_run`` events)."""
    runs = sorted((e for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"),
                  key=lambda e: e["ts"])
    kept = runs[skip_runs:]
    if not kept:
        return {"steps": 0, "kernel_ms_per_step": 0.0, "run_ms_per_step": 0.0, "by_phase": {}, "by_op": [],
                "top_nodes": []}
    start = kept[0]["ts"]
    by_op: dict[str, float] = defaultdict(float)
    nodes_of: dict[str, set] = defaultdict(set)
    by_node: dict[tuple[str, str], float] = defaultdict(float)
    by_phase: dict[str, float] = {"forward": 0.0, "backward": 0.0, "optimizer": 0.0}
    for e in events:
        if e.get("cat") != "Node" or not str(e.get("name", "")).endswith("_kernel_time") or e["ts"] < start:
            continue
        op = (e.get("args") or {}).get("op_name", "?")
        node = e["name"][: -len("_kernel_time")]
        by_op[op] += e.get("dur", 0)
        nodes_of[op].add(node)
        by_node[(node, op)] += e.get("dur", 0)
        by_phase[phase_of(node)] += e.get("dur", 0)
    n = len(kept)
    total = sum(by_op.values())
    ms = lambda us: us / n / 1000.0  # noqa: E731
    return {
        "steps": n, "kernel_ms_per_step": ms(total), "run_ms_per_step": ms(sum(e.get("dur", 0) for e in kept)),
        "by_phase": {k: ms(v) for k, v in by_phase.items()},
        "by_op": [{"op": op, "ms_per_step": ms(us), "share": us / total if total else 0.0, "nodes": len(nodes_of[op])}
                  for op, us in sorted(by_op.items(), key=lambda kv: -kv[1])],
        "top_nodes": [{"node": node, "op": op, "ms_per_step": ms(us), "share": us / total if total else 0.0}
                      for (node, op), us in sorted(by_node.items(), key=lambda kv: -kv[1])[:top]],
    }


def profile_onnx_step(model, batches: list, *, optimizer: str, threads: int, weight_decay: float, lr: float,
                      steps: int = 10, warmup: int = 3) -> dict:
    """Train ``model`` on the onnx backend for ``warmup + steps`` steps over ``batches`` (pairs of an
    input list and the targets) with the profiler on; return :func:`summarize_profile`'s dict plus
    ``wall_ms_per_step`` (the profiled steps timed from Python)."""
    with tempfile.TemporaryDirectory(prefix="onnxforge-profile-") as tmp:
        trainer = Trainer(model, Path(tmp) / "run", backend="onnx", loss="cross-entropy", optimizer=optimizer,
                          weight_decay=weight_decay, lr=lr, device="cpu", threads=threads, progress=False,
                          backend_factory=_profiled(str(Path(tmp) / "ort_profile")))
        backend = cast(OnnxBackend, trainer.backend)
        backend.prepare(Path(tmp) / "onnx", threads)
        for i in range(warmup):
            xs, y = batches[i % len(batches)]
            backend.train_step(xs, y, lr)
        t0 = time.perf_counter()
        for i in range(steps):
            xs, y = batches[i % len(batches)]
            backend.train_step(xs, y, lr)
        wall = (time.perf_counter() - t0) / steps * 1000.0
        runner = backend._runner  # the step's session (see backends/onnx.py's StepRunner)
        assert runner is not None, "the onnx backend ran steps without a runner"
        events = json.loads(Path(runner.session.end_profiling()).read_text())
    out = summarize_profile(events, skip_runs=warmup)
    out["wall_ms_per_step"] = wall
    return out
