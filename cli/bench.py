"""``onnxforge bench``: speed against raw ONNX Runtime and PyTorch, in one process."""

from __future__ import annotations

import json
from pathlib import Path

import click

from onnxforge.cli._common import print_json, to_jsonable
from onnxforge.runtime.benchmark.workloads import FAMILIES
from onnxforge.runtime.benchmark.suite import format_table, run_benchmarks


@click.command("bench")
@click.option("--quick", is_flag=True, help="Small sizes and few rounds (about half a minute); the ratios are rougher.")
@click.option("--family", "families", multiple=True, type=click.Choice(FAMILIES),
              help="Benchmark only this model family (repeatable); default: every family whose builder exists.")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="Intra-op threads for ONNX Runtime, PyTorch and numpy alike in the equal-threads rows (default: "
                   "every CPU core); the headline rows always run each framework at its own default.")
@click.option("--no-cuda", is_flag=True, help="Skip the CUDA section even when a CUDA provider works.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object instead of the table.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True), default=None,
              help="Also write the result as JSON to this file.")
@click.option("--quiet", is_flag=True, help="Show no progress bar.")
def command(quick, families, threads, no_cuda, as_json, output, quiet):
    """Measure training steps/s, inference latency and throughput, large-MLP GFLOP/s against the
    machine's numpy GEMM peak, and peak training memory, for onnxforge, raw ONNX Runtime and
    PyTorch eager with the same models, data, batches and optimizer, and print the ratios (ours /
    baseline; above 1.00x onnxforge is faster): first with each framework at its default threads
    (onnxforge's "auto", PyTorch's every core), then with --threads for all; then the training
    backends' rows: the onnx and artifacts backends beside raw ONNX Runtime, PyTorch eager,
    torch.compile and JAX jit (each skipped with a note when it cannot run here)."""
    result = run_benchmarks(quick=quick, families=tuple(families) or FAMILIES, threads=threads, cuda=not no_cuda,
                            progress=not quiet)
    if output:
        Path(output).write_text(json.dumps(to_jsonable(result), indent=2) + "\n")
    if as_json:
        print_json(result)
    else:
        click.echo(format_table(result))
