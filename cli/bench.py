"""``onnxforge bench``: speed against raw ONNX Runtime and PyTorch, in one process."""

from __future__ import annotations

import json
from pathlib import Path

import click

from onnxforge.cli._common import print_json, to_jsonable
from onnxforge.runtime.benchmark.workloads import FAMILIES
from onnxforge.runtime.benchmark.suite import format_table, run_benchmarks
from onnxforge.runtime.benchmark.zoo.models import MODELS, parse_names


@click.command("bench")
@click.option("--quick", is_flag=True, help="Small sizes and few rounds (about half a minute); the ratios are rougher.")
@click.option("--family", "families", multiple=True, type=click.Choice(FAMILIES),
              help="Benchmark only this model family (repeatable); default: every family whose builder exists.")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="Intra-op threads for ONNX Runtime, PyTorch and numpy alike in the equal-threads rows, the "
                   "training backends' rows and the --models rows, each pinned to that many cores (default: every CPU "
                   "core; the backends' rows then use their own: 1 for the small MLP and ConvNet, 2 for the LSTM and "
                   "large MLP); the headline rows always run each framework at its own default.")
@click.option("--models", "models", is_flag=False, flag_value="all", default=None, metavar="[NAME,...]",
              help="Also train real architectures exported with torch.onnx.export on the onnx backend against PyTorch "
                   "eager and torch.compile (same weights, batch and optimizer; needs PyTorch, and transformers for the "
                   "Hugging Face ones). Alone: every model; or a comma-separated list, e.g. --models "
                   f"mobilenet_v2,resnet18. Models: {', '.join(MODELS)}. Without --family only this section runs.")
@click.option("--profile", "profile_steps", type=click.IntRange(min=0), default=0, is_flag=False, flag_value=10,
              metavar="[STEPS]",
              help="With --models: profile the onnx backend's step of each model with ONNX Runtime's profiler and print "
                   "the kernel time by phase (forward, backward, optimizer), per op type and of the slowest nodes (over STEPS "
                   "steps, default 10).")
@click.option("--no-cuda", is_flag=True, help="Skip the CUDA section even when a CUDA provider works.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object instead of the table.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True), default=None,
              help="Also write the result as JSON to this file.")
@click.option("--quiet", is_flag=True, help="Show no progress bar.")
def command(quick, families, threads, models, profile_steps, no_cuda, as_json, output, quiet):
    """Measure training steps/s, inference latency and throughput, large-MLP GFLOP/s against the
    machine's numpy GEMM peak, and peak training memory, for onnxforge, raw ONNX Runtime and
    PyTorch eager with the same models, data, batches and optimizer, and print the ratios (ours /
    baseline; above 1.00x onnxforge is faster): first with each framework at its default threads
    (onnxforge's "auto", PyTorch's every core), then with --threads for all; then the training
    backends' rows: the onnx and artifacts backends beside raw ONNX Runtime, PyTorch eager,
    torch.compile and JAX jit (each skipped with a note when it cannot run here). With --models,
    real architectures (torchvision ConvNets, Hugging Face transformers from tiny configs, random
    weights, nothing downloaded) on the onnx backend against PyTorch eager and torch.compile.

    Example: onnxforge bench --models mobilenet_v2,resnet18 --threads 1 --quick --json"""
    names = parse_names(models) if models is not None else ()
    if profile_steps and not names:
        raise click.UsageError("--profile profiles the models of --models; give --models too")
    chosen = tuple(families) or (FAMILIES if not names else ())
    result = run_benchmarks(quick=quick, families=chosen, threads=threads, cuda=not no_cuda, progress=not quiet,
                            models=names, profile_steps=profile_steps)
    if output:
        Path(output).write_text(json.dumps(to_jsonable(result), indent=2) + "\n")
    if as_json:
        print_json(result)
    else:
        click.echo(format_table(result))
