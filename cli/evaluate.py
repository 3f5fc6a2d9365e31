"""``onnxforge eval``: loss and metrics of a model on a labelled dataset."""

from __future__ import annotations

import click

from onnxforge.cli._common import DEVICE, fmt, print_json


@click.command("eval")
@click.argument("model", metavar="MODEL_OR_RUNDIR", type=click.Path())
@click.option("--data", required=True, type=click.Path(dir_okay=False),
              help="Test data: an .npz with x (or arrays named after the model's inputs) and y.")
@click.option("--batch-size", type=click.IntRange(min=1), default=1024, show_default=True,
              help="Examples per inference call.")
@click.option("--device", type=DEVICE, default="auto", show_default=True, help="Where to run the model.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object.")
def command(model, data, batch_size, device, as_json):
    """Evaluate MODEL (an .onnx file or a run folder) on --data: loss, and accuracy for a classifier."""
    from onnxforge.runtime import load
    from onnxforge.runtime.tasks.evaluation import evaluate

    session = load(model, device=device)
    result = evaluate(session, data, batch_size=batch_size)
    if as_json:
        print_json(result)
    else:
        click.echo("  ".join(f"{k} {fmt(v)}" for k, v in result.items()))
