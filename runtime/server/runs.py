"""Train-while-serve: which epoch of a run folder's model is served, and whether a newer one may be.

A training run writes, after every epoch, its checkpoint, then ``model.onnx`` (whose metadata
says which epoch it holds: ``trained.epochs``), then ``metrics.json`` (one history record per
epoch). The server reads the record of the epoch the model file holds; until ``metrics.json``
has it, the model waits. A newer epoch replaces the served one only when its validation metric
is no worse: ``val_accuracy`` (higher is better) where the run has it, else ``val_loss`` (lower is
better). A run without validation data has no metric to compare, and each new epoch is served.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["METRICS_FILE", "WAITING", "epoch_of", "run_parameters", "verdict"]

METRICS_FILE = "metrics.json"
# validation metrics in order of preference, and whether larger is better
VALIDATION = (("val_accuracy", True), ("val_loss", False))
WAITING = object()  # the model file is newer than metrics.json: look again later


def epoch_of(session) -> int | None:
    """The epoch of training a model file holds (``None``: not written by a run)."""
    trained = getattr(session.card, "trained", None) or {}
    epoch = trained.get("epochs")
    return epoch if isinstance(epoch, int) and not isinstance(epoch, bool) else None


def _record(run: Path, epoch: int) -> dict | None:
    try:
        doc = json.loads((run / METRICS_FILE).read_text())
    except (OSError, ValueError, RecursionError):
        return None  # absent or being replaced: the next look finds it
    history = doc.get("history") if isinstance(doc, dict) else None
    for record in history if isinstance(history, list) else []:
        if isinstance(record, dict) and record.get("epoch") == epoch:
            return record
    return None


def run_parameters(run: Path, session):
    """``{"epoch": E, "metric": NAME, "value": V}`` for a run folder's model (metric and value only
    where the run validates), or :data:`WAITING` while ``metrics.json`` lacks the model's epoch."""
    epoch = epoch_of(session)
    if epoch is None:
        return {}
    record = _record(run, epoch)
    if record is None:
        return WAITING
    params: dict[str, Any] = {"epoch": epoch}
    for name, _ in VALIDATION:
        value = record.get(name)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            params.update(metric=name, value=float(value))
            break
    return params


def verdict(new: dict, served: dict) -> str | None:
    """Why the epoch described by ``new`` must not replace the one described by ``served``
    (``None``: it may)."""
    if not served.get("epoch") or not new.get("epoch"):
        return None
    if new["epoch"] <= served["epoch"]:
        return f"epoch {new['epoch']} is not newer than the served epoch {served['epoch']}"
    metric = served.get("metric")
    if metric is None or new.get("metric") != metric:
        return None
    higher = dict(VALIDATION)[metric]
    worse = new["value"] < served["value"] if higher else new["value"] > served["value"]
    if worse:
        return (f"epoch {new['epoch']} has {metric} {new['value']:.6g}, worse than the served epoch "
                f"{served['epoch']}'s {served['value']:.6g}")
    return None
