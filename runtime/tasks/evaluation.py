"""Evaluating a model on a labelled dataset: the task's loss and metrics, computed in numpy
from the model's outputs (the same numbers whether the model comes from a trainer or a file)."""

from __future__ import annotations

import numpy as np

from onnxforge.runtime.data.datasets import Dataset, as_dataset, check_dataset, vocab_sizes
from onnxforge.runtime.inference.session import Session
from onnxforge.runtime.tasks.task import task_for

__all__ = ["evaluate", "predict_output", "checked_dataset"]


def _output_name(session: Session) -> str:
    return session.metadata.get("output") or session.outputs[0].name


def checked_dataset(session: Session, data, *, need_targets: bool = True, name: str = "data") -> Dataset:
    """``data`` loaded (if a path) and checked against the session's model."""
    task = task_for(session.metadata, _loss_of(session))
    ds = as_dataset(data, [i.name for i in session.inputs], name, task.preparer(session.metadata)) if not isinstance(data, Dataset) else data
    out = next(o for o in session.outputs if o.name == _output_name(session))
    classes = session.metadata.get("classes") or (out.shape[-1] if task.labels_are_classes and out.shape else None)
    return check_dataset(ds, session.inputs, task=task.name if task.labels_are_classes else "regression",
                         classes=classes if isinstance(classes, int) else None, target_shape=out.shape,
                         need_targets=need_targets, ignore_index=task.ignore_index,
                         vocab=vocab_sizes(session.metadata))


def _loss_of(session: Session) -> str:
    trained = session.metadata.get("trained") or {}
    return trained.get("loss", "auto") if isinstance(trained, dict) else "auto"


def predict_output(session: Session, ds: Dataset, batch_size: int = 1024) -> np.ndarray:
    """The model's main output (``metadata["output"]`` or the first) over ``ds``, in chunks."""
    name = _output_name(session)
    parts = []
    for start in range(0, len(ds), batch_size):
        feeds = {k: v[start : start + batch_size] for k, v in ds.inputs.items()}
        parts.append(session.run(feeds, [name])[name])
    return np.concatenate(parts, axis=0)


def evaluate(session: Session, data, *, loss: str | None = None, batch_size: int = 1024) -> dict:
    """Loss and metrics (``accuracy`` for classifiers) of ``session``'s model on ``data``."""
    ds = data if isinstance(data, Dataset) and data.checked else checked_dataset(session, data)
    task = task_for(session.metadata, loss or _loss_of(session))
    loss = task.default_loss if loss in (None, "auto") else loss
    result = task.evaluate(loss, predict_output(session, ds, batch_size), ds.y)
    if task.run_metrics is not None:
        result.update(task.run_metrics(session, ds, batch_size))
    result["examples"] = len(ds)
    return result
