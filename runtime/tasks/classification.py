"""Classification (task "classification"): one class per example from scores over the classes
(an MLP, a ConvNet, an LSTM reading a whole sequence); accuracy; answers name the class."""

from __future__ import annotations

from typing import Any

import numpy as np

from onnxforge.runtime.modelio.card import ModelCard
from onnxforge.runtime.tasks.task import Task

__all__ = ["Classification", "accuracy", "softmax"]


def accuracy(output: np.ndarray, y: np.ndarray, ignore_index: int | None = None) -> dict:
    pred = output.argmax(axis=-1)
    keep = y != ignore_index if ignore_index is not None else np.ones(y.shape, bool)
    total = int(keep.sum())
    return {"accuracy": float((pred[keep] == y[keep]).sum() / total) if total else 0.0}


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


class Classification(Task):
    name = "classification"
    class_scores = True

    def metrics(self, output: np.ndarray, y: np.ndarray) -> dict:
        return accuracy(output, y, self.ignore_index)

    def reads_image(self, session: Any) -> bool:
        shape = session.inputs[0].shape if session.inputs else None
        return len(session.inputs) == 1 and shape is not None and len(shape) == 4

    def answer_rows(self, out: np.ndarray, card: ModelCard) -> list[str]:
        ids = out.argmax(axis=-1)
        labels = card.labels
        if ids.ndim > 1:  # a tag per step: the next token of a language model, decoded by its tokenizer
            if card.tokenizer and card.tokens:
                tok, _ = self.tokenizers(card)
                return [tok.decode(row) for row in ids]
            return [" ".join(map(str, row)) for row in ids]
        return [labels[i] if labels and i < len(labels) else str(int(i)) for i in ids]

    def postprocess(self, scores: np.ndarray) -> dict[str, np.ndarray]:
        probs = softmax(scores.astype(np.float64))
        return {"predictions": probs.argmax(axis=-1), "confidence": probs.max(axis=-1)}
