"""``onnxforge demo``: the main job end to end on the bundled digits."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import click
import numpy as np

from onnxforge.cli._common import DEVICE, print_json
from onnxforge.graphs import mlp
from onnxforge.runtime import Trainer, load
from onnxforge.runtime.tasks.evaluation import evaluate
from onnxforge.samples import load_digits


@click.command("demo")
@click.option("--epochs", type=click.IntRange(min=1), default=40, show_default=True, help="Training epochs.")
@click.option("--device", type=DEVICE, default="cpu", show_default=True, help="Where to train and run.")
@click.option("--out", "rundir", type=click.Path(file_okay=False), default=None,
              help="Keep the run folder here (default: a temporary folder, removed afterwards).")
@click.option("--quiet", is_flag=True, help="Show no progress bar.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object.")
def command(epochs, device, rundir, quiet, as_json):
    """Build an MLP, train it on the bundled 8x8 digits, export it, evaluate the exported model with a
    fresh inference session, and print accuracy and speed."""
    (x_train, y_train), (x_test, y_test) = load_digits()
    with tempfile.TemporaryDirectory(prefix="onnxforge-demo-") as tmp:
        run = Path(rundir) if rundir else Path(tmp) / "run"
        say = (lambda *a, **k: None) if as_json else click.echo
        say(f"digits: {len(y_train)} training and {len(y_test)} test images of 8x8 pixels, 10 classes")
        model = mlp(64, [128], 10, seed=0)
        say("model: MLP 64-128-10 (ReLU), built as ONNX")
        t0 = time.perf_counter()
        trainer = Trainer(model, run, lr=3e-3, optimizer="adamw", schedule="cosine", device=device, seed=0,
                          progress=False if (quiet or as_json) else "bar")
        history = trainer.fit((x_train, y_train), (x_test, y_test), epochs=epochs, batch_size=32, overwrite=True)
        train_seconds = time.perf_counter() - t0
        session = load(run / "model.onnx", device=device)
        metrics = evaluate(session, (x_test, y_test))
        one = x_test[:1]
        for _ in range(50):
            session.run({"x": one})
        t1 = time.perf_counter()
        reps = 2000
        for _ in range(reps):
            session.run({"x": one})
        latency_us = (time.perf_counter() - t1) / reps * 1e6
        result = {
            "test_accuracy": metrics["accuracy"],
            "test_loss": metrics["loss"],
            "epochs": epochs,
            "train_seconds": train_seconds,
            "steps_per_s": float(np.median([h["steps_per_s"] for h in history])),
            "latency_us_batch1": latency_us,
            "device": trainer.device.name,
            "model": str(run / "model.onnx") if rundir else None,
        }
        if as_json:
            print_json(result)
            return
        click.echo(f"trained {epochs} epochs in {train_seconds:.1f} s "
                   f"({result['steps_per_s']:,.0f} steps/s on {trainer.device.name})")
        click.echo(f"exported model: test accuracy {metrics['accuracy']:.2%}, loss {metrics['loss']:.4f} "
                   f"({metrics['examples']} held-out images)")
        click.echo(f"inference: {latency_us:.1f} µs per image at batch 1")
        if rundir:
            click.echo(f"run folder: {run}")
