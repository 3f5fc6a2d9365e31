"""Evaluating a model on a labelled dataset: the task's loss and metrics, computed in numpy
from the model's outputs (the same numbers whether the model comes from a trainer or a file)."""

from __future__ import annotations

import numpy as np

from onnxforge.runtime.data.datasets import Dataset, check_dataset
from onnxforge.runtime.errors import DataError
from onnxforge.runtime.inference.batches import in_batches, stitch
from onnxforge.runtime.inference.session import Session
from onnxforge.runtime.modelio.card import ModelCard
from onnxforge.runtime.tasks.sources import open_data
from onnxforge.runtime.tasks.registry import task_for

__all__ = ["evaluate", "predict_output", "checked_dataset", "check_for_model", "fixed_batch"]


def check_for_model(data, inputs, output_shape, card: ModelCard, *, loss: str | None = "auto", name: str = "data",
                    need_targets: bool = True) -> Dataset:
    """``data`` (a path, pair or Dataset) loaded and checked against a model's ``inputs`` (IOInfo),
    main output shape and card, for ``loss``: class ids for cross-entropy (``[N, 1]`` squeezed,
    one-hot turned into ids), float targets shaped like the output for mse (integers cast). The one
    check behind ``train``, ``eval`` and the Python API."""
    task = task_for(card, loss or "auto")
    loss = task.default_loss if loss in (None, "auto") else loss
    if not isinstance(data, Dataset):
        data = open_data(data, inputs, card, name=name, prepare=task.preparer(card), need_targets=need_targets)
    as_classes = task.labels_are_classes and loss == "cross-entropy"
    classes = card.classes or (output_shape[-1] if as_classes and output_shape else None)
    return check_dataset(data, inputs, task=task.name if as_classes else "regression",
                         classes=classes if isinstance(classes, int) else None, target_shape=output_shape,
                         need_targets=need_targets, ignore_index=task.ignore_index, vocab=card.vocabularies)


def checked_dataset(session: Session, data, *, need_targets: bool = True, name: str = "data",
                    loss: str | None = None) -> Dataset:
    """``data`` loaded (if a path) and checked against the session's model."""
    out = next(o for o in session.outputs if o.name == session.main_output)
    return check_for_model(data, session.inputs, out.shape, session.card, loss=loss or _loss_of(session),
                           name=name, need_targets=need_targets)


def _loss_of(session: Session) -> str:
    return (session.card.trained or {}).get("loss", "auto")


def fixed_batch(inputs) -> int | None:
    """The batch size every input (IOInfo) fixes alike (an export without a dynamic batch axis), or None."""
    firsts = {i.shape[0] if i.shape and isinstance(i.shape[0], int) else None for i in inputs}
    return firsts.pop() if len(firsts) == 1 and None not in firsts else None


def predict_output(session: Session, ds: Dataset, batch_size: int = 1024) -> np.ndarray:
    """The model's main output (the card's ``output`` or the first) over ``ds``, in chunks of
    ``batch_size`` rows (of the model's own batch size where it fixes one, the last chunk padded
    with its last row)."""
    name = session.main_output
    fixed = fixed_batch(session.inputs)
    if not fixed:
        return session.predict(ds.inputs, batch_size, output=name)

    def padded(feeds: dict) -> np.ndarray:
        rows = len(next(iter(feeds.values())))
        if rows < fixed:
            feeds = {k: np.concatenate([v, np.repeat(v[-1:], fixed - rows, axis=0)]) for k, v in feeds.items()}
        return session.run(feeds, [name])[name][:rows]

    return stitch(in_batches(padded, ds.inputs, fixed), len(ds), name)


def evaluate(session: Session, data, *, loss: str | None = None, batch_size: int = 1024) -> dict:
    """Loss and metrics (``accuracy`` for classifiers) of ``session``'s model on ``data``."""
    ds = data if isinstance(data, Dataset) and data.checked else checked_dataset(session, data, loss=loss)
    task = task_for(session.card, loss or _loss_of(session))
    loss = task.default_loss if loss in (None, "auto") else loss
    if ds.y is None:
        raise DataError(f"{ds.source}: evaluation needs targets 'y'")
    result = task.evaluate(loss, predict_output(session, ds, batch_size), ds.y)
    result.update(task.run_metrics(session, ds, batch_size))
    result["examples"] = len(ds)
    return result
