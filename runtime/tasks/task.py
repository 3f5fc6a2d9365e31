"""What a model is for, read from its model card: which loss fits, which output the loss reads,
and which metrics evaluation reports. Builders write ``task``; imported models get one from the
loss the user picks."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from onnxforge.runtime.modelio.card import ModelCard
from onnxforge.runtime.tasks.language_model import language_metrics
from onnxforge.runtime.tasks.losses import numpy_loss

__all__ = ["Task", "TASKS", "task_for"]


def _classification_metrics(output: np.ndarray, y: np.ndarray, ignore_index=None) -> dict:
    pred = output.argmax(axis=-1)
    keep = y != ignore_index if ignore_index is not None else np.ones(y.shape, bool)
    total = int(keep.sum())
    return {"accuracy": float((pred[keep] == y[keep]).sum() / total) if total else 0.0}


def _regression_metrics(output: np.ndarray, y: np.ndarray, ignore_index=None) -> dict:
    diff = output.astype(np.float64) - y.reshape(output.shape).astype(np.float64)
    return {"mae": float(np.abs(diff).mean()), "rmse": float(np.sqrt((diff * diff).mean()))}


def _seq2seq_prepare(arrays: dict, card: ModelCard | None = None) -> dict:
    from onnxforge.runtime.inference.decoding import prepare_seq2seq_arrays

    return prepare_seq2seq_arrays(arrays, card)


def _seq2seq_run_metrics(session, dataset, batch_size: int = 512) -> dict:
    from onnxforge.runtime.inference.decoding import decode, sequence_metrics

    tokens, _ = decode(session, dataset.inputs["src"], max_len=int(dataset.y.shape[1]), batch_size=batch_size)
    return sequence_metrics(tokens, dataset.y)


def _captioning_prepare(arrays: dict, card: ModelCard | None = None) -> dict:
    from onnxforge.runtime.tasks.captioning import prepare_caption_arrays

    return prepare_caption_arrays(arrays, card)


def _captioning_run_metrics(session, dataset, batch_size: int = 512) -> dict:
    from onnxforge.runtime.tasks.captioning import caption_metrics

    return caption_metrics(session, dataset, batch_size)


@dataclass(frozen=True)
class Task:
    name: str
    default_loss: str
    metrics: Callable = field(repr=False)
    ignore_index: int | None = None
    labels_are_classes: bool = True
    # optional hooks: ``prepare(arrays, card) -> arrays`` derives model inputs and ``y`` from a dataset's
    # named arrays; ``run_metrics(session, dataset, batch_size) -> dict`` adds metrics that need the
    # model run another way than one forward pass (decoding)
    prepare: Callable | None = field(default=None, repr=False)
    run_metrics: Callable | None = field(default=None, repr=False)

    def preparer(self, card: ModelCard) -> Callable | None:
        """The ``prepare`` hook bound to a model's card (``None`` for tasks without one)."""
        return None if self.prepare is None else functools.partial(self.prepare, card=card)

    def evaluate(self, loss: str, output: np.ndarray, y: np.ndarray) -> dict:
        result = {"loss": numpy_loss(loss, output, y, self.ignore_index)}
        result.update(self.metrics(output, y, self.ignore_index))
        return result


TASKS: dict[str, Task] = {
    "classification": Task("classification", "cross-entropy", _classification_metrics),
    "regression": Task("regression", "mse", _regression_metrics, labels_are_classes=False),
    # per-step labels (tagger, language model): padding id 0 is ignored
    "tagging": Task("tagging", "cross-entropy", _classification_metrics, ignore_index=0),
    # encoder-decoder: data `src`/`tgt` become (src, decoder_input = BOS + tgt[:-1]) and y = tgt;
    # loss is teacher-forced, exact_match/token_accuracy come from greedy decoding
    "seq2seq": Task("seq2seq", "cross-entropy", lambda output, y, ignore_index=None: {}, ignore_index=0,
                    prepare=_seq2seq_prepare, run_metrics=_seq2seq_run_metrics),
    # the next word from the previous ones (graphs/nplm.py): accuracy and perplexity
    "language_model": Task("language_model", "cross-entropy", language_metrics),
    # an image in, a caption out (graphs/captioner.py): teacher-forced like seq2seq, exact_match and
    # token_accuracy from greedy decoding
    "captioning": Task("captioning", "cross-entropy", lambda output, y, ignore_index=None: {}, ignore_index=0,
                       prepare=_captioning_prepare, run_metrics=_captioning_run_metrics),
}


def task_for(card: ModelCard, loss: str = "auto") -> Task:
    """The task named in the model's ``card``; for a model without one, the task that ``loss`` implies."""
    name = card.task
    if name in TASKS:
        return TASKS[name]
    return TASKS["regression"] if loss == "mse" else TASKS["classification"]
