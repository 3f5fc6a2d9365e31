"""``onnxforge plot``: draw a run's learning curves as a PNG (loss and each metric per epoch).

One panel per quantity (loss, accuracy, ...), each with its training curve and its validation
curve (``val_``) where the run recorded them, epochs on the x axis. The PNG's text chunk
``Description`` lists the panels and their curves (read back by tests and scripts). Drawn with
matplotlib, from the ``plot`` extra (``pip install 'onnxforge[plot]'``); the same module draws the
confusion matrix of ``eval --report``.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import click
import numpy as np

from onnxforge.runtime.errors import ConfigError, DataError
from onnxforge.runtime.modelio.files import atomic_write_bytes

__all__ = ["command", "curves", "learning_curves_png", "confusion_png"]

_NOT_CURVES = ("epoch", "seconds", "cpu_seconds", "lr", "steps_per_s", "step", "steps")


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise ConfigError("plots need matplotlib: pip install 'onnxforge[plot]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def curves(history: list[dict]) -> dict[str, list[str]]:
    """``{panel: [record keys]}``: each quantity with its training and validation keys."""
    panels: dict[str, list[str]] = {}
    for record in history:
        for key, value in record.items():
            if key in _NOT_CURVES or not isinstance(value, (int, float)) or isinstance(value, bool):
                continue
            base = key[4:] if key.startswith("val_") else key
            keys = panels.setdefault(base, [])
            if key not in keys:
                keys.append(key)
    for keys in panels.values():
        keys.sort(key=lambda k: k.startswith("val_"))
    return dict(sorted(panels.items(), key=lambda kv: (kv[0] != "loss", kv[0])))


def _save(fig, plt, path: Path, description: str) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, metadata={"Description": description, "Software": "onnxforge"})
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
    return path


def learning_curves_png(history: list[dict], path, title: str = "") -> Path:
    """Write the learning curves of ``history`` (a run's per-epoch records) to ``path``."""
    panels = curves(history)
    if not panels:
        raise DataError("the run's history holds no epochs with a loss or metric to plot")
    plt = _pyplot()
    fig, axes = plt.subplots(len(panels), 1, figsize=(7, 3 * len(panels)), squeeze=False)
    for ax, (base, keys) in zip(axes[:, 0], panels.items()):
        for key in keys:
            points = [(r.get("epoch", i + 1), r[key]) for i, r in enumerate(history) if isinstance(r.get(key), (int, float))]
            ax.plot([p[0] for p in points], [p[1] for p in points], marker="o",
                    label=("validation " if key.startswith("val_") else "training ") + base)
        ax.set_xlabel("epoch")
        ax.set_ylabel(base)
        ax.set_title(base)
        ax.grid(True, alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, plt, Path(path), "; ".join(f"{b}: {', '.join(k)}" for b, k in panels.items()))


def confusion_png(matrix: np.ndarray, labels: list[str], path) -> Path:
    """Write a confusion matrix (rows: true class, columns: predicted) with its counts to ``path``."""
    plt = _pyplot()
    n = len(labels)
    size = min(16, 2 + 0.6 * n)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(n), labels, rotation=45, ha="right")
    ax.set_yticks(range(n), labels)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title("confusion matrix")
    top = matrix.max() if matrix.size else 0
    for i in range(n):
        for j in range(n):
            ax.text(j, i, str(int(matrix[i, j])), ha="center", va="center",
                    color="white" if matrix[i, j] > top / 2 else "black", fontsize=8)
    fig.tight_layout()
    return _save(fig, plt, Path(path), "confusion matrix; classes: " + ", ".join(labels))


@click.command("plot")
@click.argument("rundir", type=click.Path(file_okay=False))
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None,
              help="Where to write the PNG [default: RUNDIR/curves.png].")
def command(rundir, output):
    """Draw the learning curves of the run in RUNDIR (its metrics.json) as a PNG."""
    metrics = Path(rundir) / "metrics.json"
    if not metrics.is_file():
        raise DataError(f"run folder '{rundir}' has no metrics.json (train a model into it first)")
    try:
        history = json.loads(metrics.read_text(encoding="utf-8")).get("history") or []
    except (ValueError, AttributeError, UnicodeDecodeError, RecursionError):
        raise DataError(f"'{metrics}' is not a readable metrics.json") from None
    path = learning_curves_png(history, output or Path(rundir) / "curves.png", title=Path(rundir).name)
    click.echo(f"wrote {path} ({', '.join(curves(history))} over {len(history)} epochs)")
