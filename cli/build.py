"""``onnxforge build``: write a new network as a standard ONNX file."""

from __future__ import annotations

import click
import numpy as np

from onnxforge.cli._common import IntList, print_json
from onnxforge.runtime.modelio import save_model


@click.group("build")
def command() -> None:
    """Build a network with freshly initialised weights and save it as an ONNX file."""


def _save(model, output: str, as_json: bool) -> None:
    path = save_model(model, output)
    params = sum(int(np.prod(t.dims)) for t in model.graph.initializer if t.data_type == 1)
    if as_json:
        print_json({"path": str(path), "parameters": params, "opset": model.opset_import[0].version})
    else:
        click.echo(f"wrote {path} ({params:,} parameters)")


@command.command("mlp")
@click.option("--inputs", "inputs", type=click.IntRange(min=1), required=True, help="Number of input features.")
@click.option("--hidden", type=IntList(), default="128", show_default=True,
              help="Widths of the hidden layers, comma-separated, for example 128,64.")
@click.option("--classes", type=click.IntRange(min=2), default=None,
              help="Number of classes for a classifier (trained with cross-entropy).")
@click.option("--outputs", type=click.IntRange(min=1), default=None,
              help="Number of outputs for a regression model (trained with MSE), instead of --classes.")
@click.option("--activation", default="relu", show_default=True,
              help="Activation between layers: relu, leaky_relu, tanh, sigmoid, or a plugin op's name.")
@click.option("--dropout", type=click.FloatRange(0.0, 1.0, max_open=True), default=0.0, show_default=True,
              help="Dropout rate after each hidden layer, active only in training.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the weight initialisation.")
@click.option("-o", "--output", type=click.Path(dir_okay=False), required=True, help="Where to write the .onnx file.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object.")
def mlp_command(inputs, hidden, classes, outputs, activation, dropout, seed, output, as_json):
    """Build a multi-layer perceptron: fully connected layers with an activation between them."""
    from onnxforge.graphs import mlp

    if (classes is None) == (outputs is None):
        raise click.UsageError("give exactly one of --classes (a classifier) or --outputs (a regression model)")
    model = mlp(inputs, list(hidden), classes or outputs, activation=activation, dropout=dropout, seed=seed,
                task="classification" if classes else "regression")
    _save(model, output, as_json)

