"""The training options ``train`` and ``bundle`` share (a bundle trains what ``train`` would): the
optimisation and data-order options, and the LoRA adapter options, each written once."""

from __future__ import annotations

import click

from onnxforge.runtime.training.config import LOSS_CHOICES, OPTIMIZERS
from onnxforge.runtime.training.schedules import SCHEDULES

__all__ = ["lora_options", "step_options"]

_STEP_OPTIONS = (
    click.option("--epochs", type=click.IntRange(min=1), default=10, show_default=True, help="Number of epochs in total."),
    click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True, help="Examples per step."),
    click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=1e-3, show_default=True,
                 help="Learning rate."),
    click.option("--optimizer", type=click.Choice(OPTIMIZERS), default="adamw", show_default=True,
                 help="AdamW or plain stochastic gradient descent."),
    click.option("--weight-decay", type=click.FloatRange(min=0), default=0.01, show_default=True,
                 help="AdamW's decoupled weight decay."),
    click.option("--schedule", type=click.Choice(SCHEDULES), default="constant", show_default=True,
                 help="How the learning rate changes over the run."),
    click.option("--warmup-steps", type=click.IntRange(min=0), default=0, show_default=True,
                 help="Steps of linear learning-rate warm-up at the start."),
    click.option("--loss", type=click.Choice(LOSS_CHOICES), default="auto", show_default=True,
                 help="Loss; auto takes the one the model's task needs (mse is half the summed squared error per "
                      "example)."),
    click.option("--freeze", multiple=True, metavar="PATTERN",
                 help="Keep parameters whose names match this glob pattern fixed (repeatable), e.g. 'fc1.*'; "
                      "a batch norm whose scale and bias are frozen keeps its running statistics too."),
    click.option("--seed", type=int, default=0, show_default=True, help="Seed of the data order and dropout."),
    click.option("--no-shuffle", is_flag=True, help="Visit the examples in file order every epoch."),
)


def _apply(options, f):
    for option in reversed(options):  # decorators apply bottom-up: the first option shows first in --help
        f = option(f)
    return f


def step_options(f):
    """--epochs --batch-size --lr --optimizer --weight-decay --schedule --warmup-steps --loss --freeze
    --seed --no-shuffle."""
    return _apply(_STEP_OPTIONS, f)


def lora_options(where: str):
    """--lora RANK, --lora-alpha A, --lora-targets GLOB; ``where`` ends --lora's help: what the
    command writes the adapters into."""
    options = (
        click.option("--lora", type=click.IntRange(min=1), default=None, metavar="RANK",
                     help=f"Train low-rank adapters of this rank on the MatMul/Gemm weights and nothing else; {where}"),
        click.option("--lora-alpha", type=click.FloatRange(min=0, min_open=True), default=None, metavar="A",
                     help="LoRA alpha: the adapters are scaled by A/RANK [default: RANK, scale 1]."),
        click.option("--lora-targets", multiple=True, metavar="GLOB",
                     help="Adapt only the weights (initializer names) matching this glob (repeatable) [default: every "
                          "2-D weight of a MatMul or Gemm]."),
    )
    return lambda f: _apply(options, f)
