"""``onnxforge weights``: a model's parameters to and from .npz or .safetensors files."""

from __future__ import annotations

import click

from onnxforge.cli._common import print_json
from onnxforge.runtime.modelio.files import load_model, save_model
from onnxforge.runtime.modelio.weights import apply_weights, load_weights, save_weights, weights_bytes


@click.group("weights")
def command() -> None:
    """Export a model's parameters to .npz or .safetensors, or load them into a model."""


@command.command("export")
@click.argument("model", type=click.Path(exists=True))
@click.option("-o", "--output", type=click.Path(dir_okay=False), required=True,
              help="The weights file; .npz or .safetensors.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object.")
def export_command(model, output, as_json):
    """Write the float parameters of MODEL (an .onnx file or a run folder) to a weights file."""
    result = {"path": output, **save_weights(load_model(model), output)}
    if as_json:
        print_json(result)
    else:
        click.echo(f"wrote {output}: {result['tensors']} tensors, {result['values']:,} values")


@command.command("import")
@click.argument("model", type=click.Path(exists=True))
@click.argument("weights", type=click.Path(exists=True, dir_okay=False))
@click.option("-o", "--output", type=click.Path(dir_okay=False), required=True, help="Where to write the new .onnx file.")
@click.option("--partial", is_flag=True, help="Accept a file holding only some of the model's parameters.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object.")
def import_command(model, weights, output, partial, as_json):
    """Write MODEL with its parameters replaced by those in WEIGHTS (same names and shapes)."""
    base = load_model(model)
    limit = weights_bytes(base) + (1 << 20)  # a file may declare no more than the model's weights take
    updated, replaced = apply_weights(base, load_weights(weights, max_bytes=limit), strict=not partial)
    save_model(updated, output)
    result = {"path": output, "replaced": replaced}
    if as_json:
        print_json(result)
    else:
        click.echo(f"wrote {output}: {len(replaced)} parameters replaced from {weights}")
