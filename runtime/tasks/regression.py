"""Regression (task "regression"): numbers out, mean squared error; MAE and RMSE."""

from __future__ import annotations

import numpy as np

from onnxforge.runtime.tasks.task import Task

__all__ = ["Regression"]


class Regression(Task):
    name = "regression"
    default_loss = "mse"
    labels_are_classes = False
    confusion_report = False

    def metrics(self, output: np.ndarray, y: np.ndarray) -> dict:
        diff = output.astype(np.float64) - y.reshape(output.shape).astype(np.float64)
        return {"mae": float(np.abs(diff).mean()), "rmse": float(np.sqrt((diff * diff).mean()))}
