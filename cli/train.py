"""``onnxforge train``: train a model on an .npz dataset into a run folder."""

from __future__ import annotations

from pathlib import Path

import click

from onnxforge.cli._common import DEVICE, print_json
from onnxforge.runtime.training.trainer import format_record


@click.command("train")
@click.argument("model", type=click.Path(dir_okay=True))
@click.option("--data", required=True, type=click.Path(dir_okay=False),
              help="Training data: an .npz with x (or arrays named after the model's inputs) and y.")
@click.option("--val", type=click.Path(dir_okay=False), default=None,
              help="Validation data in the same form, evaluated after every epoch.")
@click.option("--epochs", type=click.IntRange(min=1), default=10, show_default=True, help="Number of epochs in total.")
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True, help="Examples per step.")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=1e-3, show_default=True, help="Learning rate.")
@click.option("--optimizer", type=click.Choice(["adamw", "sgd"]), default="adamw", show_default=True,
              help="AdamW or plain stochastic gradient descent.")
@click.option("--weight-decay", type=click.FloatRange(min=0), default=0.01, show_default=True,
              help="AdamW's decoupled weight decay.")
@click.option("--schedule", type=click.Choice(["constant", "linear", "cosine"]), default="constant", show_default=True,
              help="How the learning rate changes over the run.")
@click.option("--warmup-steps", type=click.IntRange(min=0), default=0, show_default=True,
              help="Steps of linear learning-rate warm-up at the start.")
@click.option("--loss", type=click.Choice(["auto", "cross-entropy", "mse"]), default="auto", show_default=True,
              help="Loss; auto takes the one the model's task needs (mse is half the summed squared error per example).")
@click.option("--freeze", multiple=True, metavar="PATTERN",
              help="Keep parameters whose names match this glob pattern fixed (repeatable), e.g. 'fc1.*'.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the data order and dropout.")
@click.option("--no-shuffle", is_flag=True, help="Visit the examples in file order every epoch.")
@click.option("--device", type=DEVICE, default="auto", show_default=True,
              help="Where to train; auto takes CUDA only when it really works.")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="ONNX Runtime intra-op threads (default: 1 when a training step is small, every core when it is large).")
@click.option("--out", "rundir", type=click.Path(file_okay=False), default=None,
              help="Run folder for artifacts, checkpoints, model.onnx and metrics.json [default: runs/MODEL-NAME].")
@click.option("--resume", is_flag=True, help="Continue the run in --out from its last checkpoint.")
@click.option("--overwrite", is_flag=True, help="Start again in a run folder that already holds a checkpoint.")
@click.option("--quiet", is_flag=True, help="Show no progress bar.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object.")
def command(model, data, val, epochs, batch_size, lr, optimizer, weight_decay, schedule, warmup_steps, loss,
            freeze, seed, no_shuffle, device, threads, rundir, resume, overwrite, quiet, as_json):
    """Train MODEL on --data with ONNX Runtime and write the run folder.

    A checkpoint is written before the first step and after every epoch (synced, renamed into
    place, its SHA-256 recorded), with RUNDIR/model.onnx and RUNDIR/metrics.json, so a run killed
    at any moment loses at most one epoch and continues with --resume; a damaged checkpoint is
    refused, never replaced by a fresh start.
    """
    from onnxforge.runtime import Trainer

    rundir = Path(rundir) if rundir else Path("runs") / Path(model).stem
    trainer = Trainer(model, rundir, loss=loss, optimizer=optimizer, lr=lr, weight_decay=weight_decay,
                      schedule=schedule, warmup_steps=warmup_steps, freeze=freeze, device=device, seed=seed,
                      threads=threads or "auto", progress=not quiet)
    if not quiet and not as_json:
        click.echo(f"training on {trainer.device.name} ({trainer.device.reason}); "
                   f"{len(trainer.trainable)} trainable, {len(trainer.frozen)} frozen parameters", err=True)
    history = trainer.fit(data, val, epochs=epochs, batch_size=batch_size, shuffle=not no_shuffle,
                          resume=resume, overwrite=overwrite)
    final = history[-1] if history else {}
    result = {"rundir": str(rundir), "model": str(rundir / "model.onnx"), "device": trainer.device.name,
              "loss_function": trainer.loss, "epochs": trainer.epoch, "steps": trainer.step,
              "final": final, "history": history}
    if as_json:
        print_json(result)
        return
    click.echo(f"trained {trainer.epoch} epochs ({trainer.step} steps): {format_record(final)}")
    click.echo(f"model: {rundir / 'model.onnx'}   history: {rundir / 'metrics.json'}")
