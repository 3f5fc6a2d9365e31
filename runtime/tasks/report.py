"""Per-class precision, recall and F1 and the confusion matrix of a classifier on labelled data
(``eval --report``), computed in numpy from the model's predictions."""

from __future__ import annotations

import numpy as np

from onnxforge.runtime.errors import ModelError
from onnxforge.runtime.tasks.evaluation import predict_output
from onnxforge.runtime.tasks.registry import task_of

__all__ = ["class_report", "confusion_matrix"]


def confusion_matrix(y: np.ndarray, pred: np.ndarray, classes: int) -> np.ndarray:
    """``m[i, j]``: examples of true class ``i`` predicted as ``j``."""
    m = np.zeros((classes, classes), np.int64)
    np.add.at(m, (y.reshape(-1), pred.reshape(-1)), 1)
    return m


def class_report(session, ds, batch_size: int = 1024) -> dict:
    """``{"labels", "confusion", "classes": [{name, precision, recall, f1, support}], "macro_f1"}``."""
    if not task_of(session.card).confusion_report:
        raise ModelError(f"--report needs a classifier; this model's task is {session.card.task!r}")
    output = predict_output(session, ds, batch_size)
    n = int(output.shape[-1])
    labels = session.card.labels if session.card.labels and len(session.card.labels) == n else [str(i) for i in range(n)]
    m = confusion_matrix(ds.y, output.argmax(axis=-1), n)
    tp = np.diag(m).astype(np.float64)
    predicted, actual = m.sum(axis=0), m.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(predicted > 0, tp / predicted, 0.0)
        recall = np.where(actual > 0, tp / actual, 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    rows = [{"name": labels[i], "precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
             "support": int(actual[i])} for i in range(n)]
    present = actual > 0
    return {"labels": labels, "confusion": m, "classes": rows,
            "macro_f1": float(f1[present].mean()) if present.any() else 0.0}
