"""``onnxforge gradcheck``: the onnx backend's gradients against float64 finite differences."""

from __future__ import annotations

import click

from onnxforge.cli._common import print_json
from onnxforge.runtime.convert.verify import random_feeds
from onnxforge.runtime.data.arrays import read_npz
from onnxforge.runtime.errors import DataError
from onnxforge.runtime.inference.session import model_inputs
from onnxforge.runtime.modelio.card import ModelCard
from onnxforge.runtime.modelio.files import load_model
from onnxforge.runtime.training.gradcheck import gradcheck


def _feeds(model, data, batch: int, seed: int) -> dict:
    """One batch of the model's inputs: from an .npz (arrays named after the inputs, or ``x`` for a
    single input), else random (floats from a normal, integers below the declared or 8)."""
    import numpy as np

    inputs = model_inputs(model)
    if data is None:
        return random_feeds(model, batch=batch, seed=seed)
    if not str(data).lower().endswith(".npz"):
        raise DataError(f"--data takes an .npz with one array per model input (or x); got '{data}'")
    arrays = read_npz(data)
    if len(inputs) == 1 and inputs[0].name not in arrays and "x" in arrays:
        arrays = {inputs[0].name: arrays["x"]}
    return {k: np.asarray(v)[:batch] for k, v in arrays.items() if k in {i.name for i in inputs}}


@click.command("gradcheck")
@click.argument("model", type=click.Path(exists=True, dir_okay=False))
@click.option("--data", type=click.Path(exists=True, dir_okay=False), default=None,
              help="An .npz with one array per model input (or x); its first --batch rows are used. "
                   "Default: random inputs of the declared shapes.")
@click.option("--params", "patterns", multiple=True, metavar="GLOB",
              help="Check only the parameters whose names match (fnmatch, repeatable), e.g. 'layer1.*'.")
@click.option("--samples", type=click.IntRange(min=1), default=8, show_default=True,
              help="Random elements checked per parameter (two float64 forward runs each).")
@click.option("--tolerance", type=click.FloatRange(min=0), default=1e-4, show_default=True,
              help="Largest accepted error, relative to the parameter's largest gradient.")
@click.option("--batch", type=click.IntRange(min=1), default=2, show_default=True, help="Examples in the batch.")
@click.option("--output", "output", default=None, help="The output to differentiate [default: the model card's, else the first].")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the sampled elements, dY and random inputs.")
@click.option("--quiet", is_flag=True, help="Show no progress bar.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON object.")
def command(model, data, patterns, samples, tolerance, batch, output, seed, quiet, as_json):
    """Check MODEL's parameter gradients (as the onnx training backend builds them) against central
    finite differences in float64, on --samples random elements of each parameter.

    The objective is sum(dY * output) for a random dY, so every op between a parameter and the
    output is checked whatever the loss. Prints the worst relative error per parameter and exits
    with status 1 when any is above --tolerance.
    """
    import sys

    from tqdm.auto import tqdm

    onnx_model = load_model(model)
    if output is None:
        output = ModelCard.from_model(onnx_model).output or None
    feeds = _feeds(onnx_model, data, batch, seed)
    bar = tqdm(total=1, desc="gradcheck", unit="run", leave=False, disable=quiet or as_json, file=sys.stderr)

    def progress(done, total):
        bar.total = total
        bar.update(done - bar.n)

    try:
        report = gradcheck(onnx_model, feeds, output=output, params=patterns, samples=samples, tolerance=tolerance,
                           seed=seed, progress=progress)
    finally:
        bar.close()
    if as_json:
        print_json(report.to_dict())
    else:
        width = max([len(p.name) for p in report.parameters] + [9])
        click.echo(f"{model}: gradients of sum(dY * {report.output}) against central differences "
                   f"({report.engine}), tolerance {report.tolerance:g}")
        click.echo(f"{'parameter':<{width}}  samples  worst rel. error  at          analytic      numeric")
        for p in report.parameters:
            mark = "" if p.ok else "  FAIL"
            click.echo(f"{p.name:<{width}}  {p.samples:>7}  {p.max_rel_error:>16.3g}  {str(p.worst_index):<10}  "
                       f"{p.analytic:>12.5g}  {p.numeric:>11.5g}{mark}")
        if report.passed:
            click.echo(f"passed: {len(report.parameters)} parameters within {report.tolerance:g}")
        else:
            click.echo(f"FAILED: {', '.join(report.failed)} above {report.tolerance:g}", err=True)
    if not report.passed:
        sys.exit(1)
