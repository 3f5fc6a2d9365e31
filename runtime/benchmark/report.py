"""The benchmark's table: a :func:`~onnxforge.runtime.benchmark.suite.run_benchmarks` result as text."""

from __future__ import annotations

__all__ = ["format_table"]


def _x(value) -> str:
    return "-" if value is None else f"{value:.2f}x"


def _n(value, unit="") -> str:
    if value is None:
        return "-"
    if value >= 100:
        return f"{value:,.0f}{unit}"
    return f"{value:.1f}{unit}"


def _v(row: dict, who: str, key: str):
    """``row[who][key]``, or None where that contestant did not run (not installed here)."""
    return (row.get(who) or {}).get(key)


def _pct(value) -> str:
    return "-" if value is None else f"{value:.0%}"


def _f0(value) -> str:
    return "-" if value is None else f"{value:.0f}"


def _section(lines, title, training, inference):
    lines.append(f"{title}")
    lines.append(f"  {'training (steps/s)':34} {'onnxforge':>10} {'raw ORT':>10} {'PyTorch':>10} {'vs ORT':>8} {'vs torch':>9}"
                 f" {'cpu: vs ORT':>12} {'vs torch':>9}")
    for r in training:
        label = f"{r['workload']} b{r['batch']}" + (" SGD" if r.get("optimizer") == "sgd" else "")
        lines.append(f"  {label:34} {_n(r['onnxforge']['steps_per_s']):>10} {_n(_v(r, 'ort', 'steps_per_s')):>10} "
                     f"{_n(_v(r, 'torch', 'steps_per_s')):>10} {_x(r.get('ratio_vs_ort')):>8} {_x(r.get('ratio_vs_torch')):>9}"
                     f" {_x(r.get('cpu_ratio_vs_ort')):>12} {_x(r.get('cpu_ratio_vs_torch')):>9}")
    lines.append(f"  {'inference':34} {'onnxforge':>10} {'raw ORT':>10} {'PyTorch':>10} {'vs ORT':>8} {'vs torch':>9}")
    for r in inference:
        for key, label, _unit, ratio in (("latency_us_median", "b1 latency median (us)", "", "latency_ratio"),
                                        ("latency_us_p99", "b1 latency p99 (us)", "", "p99_ratio"),
                                        ("throughput_per_s", "b256 throughput (ex/s)", "", "throughput_ratio")):
            name = f"{r['workload']} {label}"
            lines.append(f"  {name:34} {_n(r['onnxforge'][key]):>10} {_n(_v(r, 'ort', key)):>10} "
                         f"{_n(_v(r, 'torch', key)):>10} {_x(r.get(f'{ratio}_vs_ort')):>8} {_x(r.get(f'{ratio}_vs_torch')):>9}")


_NAMES = {"onnx": "onnx", "artifacts": "artifacts", "ort": "raw ORT", "torch": "PyTorch", "torch.compile": "t.compile",
          "jax": "JAX jit"}
_SHOWN = {"torch.compile": "torch.compile", "jax": "JAX jit", "torch": "PyTorch eager", "ort": "raw ORT",
          "artifacts": "the artifacts backend"}


def _backends(lines, rows):
    """The training backends' rows: steps/s, then the onnx backend's ratio to each; then who is ahead."""
    if not rows:
        return
    lines.append("")
    lines.append(f"training backends and peers (steps/s; one process, alternating rounds of "
                 f"{rows[0]['seconds_per_round']:g} s, median of {rows[0]['rounds']}; second line: onnx backend / each)")
    lines.append(f"  {'workload':30} {'opt':5} {'thr':>3} " + " ".join(f"{_NAMES[k]:>10}" for k in _NAMES))
    ahead = []
    for r in rows:
        rates, ratio = r["steps_per_s"], r["onnx_ratio"]
        label = f"{r['workload']} b{r['batch']}"
        lines.append(f"  {label:30} {r['optimizer']:5} {r['threads']:>3} "
                     + " ".join(f"{_n(rates.get(k)):>10}" for k in _NAMES))
        lines.append(f"  {'':30} {'':5} {'':>3} " + " ".join(f"{_x(ratio.get(k)) if k != 'onnx' else '':>10}" for k in _NAMES))
        ahead += [f"{_SHOWN[k]} on {label} {r['optimizer']} by {1 / v:.2f}x" for k, v in ratio.items() if v < 1]
    lines.append("  ahead of the onnx backend: " + ("; ".join(ahead) if ahead else "nobody, on every row"))


_MODEL_NAMES = {"onnx": "onnx", "torch": "PyTorch", "torch.compile": "t.compile", "jax": "JAX jit"}


def _models(lines, rows):
    """The --models rows: steps/s, the onnx backend's ratio to each, notes; profiles after them."""
    if not rows:
        return
    first = rows[0]
    ran = [r for r in rows if not r.get("error")]
    # notes every row that ran shares (JAX has no twin, --quick leaves torch.compile out): said once, below
    common = [n for n in ran[0]["notes"] if all(n in r["notes"] for r in ran[1:])] if len(ran) > 1 else []
    lines.append("")
    lines.append(f"real architectures, exported by torch.onnx.export (steps/s, {first['optimizer']}, {first['threads']} "
                 f"thread(s); alternating rounds of {first['seconds_per_round']:g} s, median of {first['rounds']}; "
                 "second line: onnx backend / each)")
    lines.append(f"  {'model':20} {'batch':>5} {'input':>9} " + " ".join(f"{v:>10}" for v in _MODEL_NAMES.values()))
    for r in rows:
        rates, ratio = r["steps_per_s"], r["onnx_ratio"]
        shape = "x".join(map(str, r["input"]))
        lines.append(f"  {r['model']:20} {r['batch']:>5} {shape:>9} " + " ".join(f"{_n(rates.get(k)):>10}" for k in _MODEL_NAMES))
        if ratio:
            lines.append(f"  {'':20} {'':>5} {'':>9} "
                         + " ".join(f"{_x(ratio.get(k)) if k != 'onnx' else '':>10}" for k in _MODEL_NAMES))
        if r.get("error"):
            lines.append(f"  {'':20} not run: {r['error']}")
        for note in r["notes"]:
            if note not in common:
                lines.append(f"  {'':20} {note}")
    sources = sorted({r["source"] for r in rows if r.get("source")})
    lines.append(f"  architectures from: {', '.join(sources) or '-'}")
    for note in common:
        lines.append(f"  every row: {note}")
    for r in rows:
        if r.get("profile"):
            _profile(lines, r)


def _profile(lines, row):
    p = row["profile"]
    lines.append("")
    lines.append(f"profile of the onnx backend's step on {row['model']} (ONNX Runtime's profiler, {p['steps']} steps): "
                 f"{p['wall_ms_per_step']:.2f} ms/step wall, {p['kernel_ms_per_step']:.2f} ms in kernels")
    phases = p.get("by_phase") or {}
    if phases:
        lines.append("  kernel time by phase: " + ", ".join(f"{k} {v:.2f} ms ({v / max(p['kernel_ms_per_step'], 1e-12):.0%})"
                                                          for k, v in phases.items()))
    lines.append(f"  {'op type':28} {'ms/step':>8} {'share':>6} {'nodes':>6}")
    for o in p["by_op"]:
        lines.append(f"  {o['op']:28} {o['ms_per_step']:>8.3f} {o['share']:>6.1%} {o['nodes']:>6}")
    lines.append(f"  {'slowest nodes':28} {'ms/step':>8} {'share':>6}  op")
    for o in p["top_nodes"]:
        lines.append(f"  {o['node'][:28]:28} {o['ms_per_step']:>8.3f} {o['share']:>6.1%}  {o['op']}")


def format_table(result: dict) -> str:
    """The human-readable table of a :func:`run_benchmarks` result."""
    v = result["versions"]
    lines = [f"onnxforge benchmarks ({'quick' if result['quick'] else 'full'}): {result['threads']} threads, "
             f"ONNX Runtime {v['onnxruntime']}, PyTorch {v['torch'] or 'not installed'}, numpy {v['numpy']}",
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
                         f"{_n(_v(r, 'torch', 'steps_per_s')):>10} {r['torch_threads']:>7} {_x(r.get('ratio_vs_torch')):>9}"
                         f" {_x(r.get('ratio_vs_ort')):>10}")
        lines.append("")
    if result["training"] or result["inference"]:
        _section(lines, f"CPU, equal threads ({result['threads']} for all)", result["training"], result["inference"])
    for lm in (result.get("large_mlp"), result.get("large_mlp_sgd")):
        if not lm:
            continue
        lines.append("")
        lines.append(f"large MLP training ({lm['workload']}, batch 256, {lm['optimizer']}) vs numpy float32 GEMM peak "
                     f"{lm['gemm_peak_gflops']:.0f} GFLOP/s (measured between the same rounds; "
                     f"{lm['gemm_peak_cpu_gflops']:.0f} per CPU second)")
        lines.append(f"  onnxforge {lm['onnxforge_gflops']:.0f} GFLOP/s = {lm['onnxforge_fraction_of_peak']:.0%} of peak; "
                     f"raw ORT {_f0(lm.get('ort_gflops'))} ({_pct(lm.get('ort_fraction_of_peak'))}); "
                     f"PyTorch {_f0(lm.get('torch_gflops'))} ({_pct(lm.get('torch_fraction_of_peak'))})")
        lines.append(f"  by CPU time: onnxforge {lm['onnxforge_cpu_fraction_of_peak']:.0%}, raw ORT "
                     f"{_pct(lm.get('ort_cpu_fraction_of_peak'))}, PyTorch {_pct(lm.get('torch_cpu_fraction_of_peak'))} of "
                     f"peak; ORT forward+backward alone {_pct(lm.get('ort_forward_backward_cpu_fraction_of_peak'))}, "
                     f"its {lm['optimizer']} step {_pct(lm.get('ort_optimizer_share_of_step_cpu'))} of the step")
    _backends(lines, result.get("backends"))
    _models(lines, result.get("models"))
    mem = result.get("memory")
    if mem:
        o, t = mem["onnxforge"], mem.get("torch")
        lines.append("")
        lines.append(f"peak memory of a training run ({mem['workload']}, {mem['steps']} steps, fresh process each)")
        theirs = (f"PyTorch {t['peak_rss_mb']:.0f} MB (+{t['training_rss_increase_mb']:.0f} MB); "
                  f"PyTorch / ours {mem['peak_ratio_torch_over_ours']:.2f}x") if t else "PyTorch: not installed"
        lines.append(f"  onnxforge peak RSS {o['peak_rss_mb']:.0f} MB (+{o['training_rss_increase_mb']:.0f} MB while training); "
                     + theirs)
    if result.get("cuda"):
        lines.append("")
        _section(lines, "CUDA (against PyTorch on CUDA)", result["cuda"]["training"], result["cuda"]["inference"])
    for note in result["notes"]:
        lines.append(f"note: {note}")
    return "\n".join(lines)
