"""What a model is for, one class per task: the loss that fits, its metrics, how its data files are
opened, how raw examples become feeds, how outputs become answers. Builders write ``task`` in the
model card; an imported model gets one from the loss the user picks.

A task is a :class:`Task` subclass in a module of its own (``classification.py``, ``seq2seq.py``,
...) listed once in :mod:`.registry`; the rooms look a model's task up there (``task_of(card)``,
``task_for(card, loss)``) and call its hooks instead of comparing task names. :class:`Task` itself
is the task of a model whose card names none: a forward pass whose outputs are the answer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, ClassVar

import numpy as np

from onnxforge.runtime.data import text
from onnxforge.runtime.data.datasets import Dataset
from onnxforge.runtime.data.tokenizers import Tokenizer
from onnxforge.runtime.errors import DataError, ModelError
from onnxforge.runtime.modelio.card import ModelCard
from onnxforge.runtime.tasks.losses import numpy_loss

__all__ = ["Task", "NO_TOKENIZER", "text_width"]

NO_TOKENIZER = "the model card has no tokenizer (build the model with --vocab-from a text file) to read text"


def text_width(card: ModelCard) -> int | None:
    """The fixed number of token ids per text of a fixed-length build (None: any length)."""
    args = card.args or {}
    return card.max_len if args.get("impl") == "unrolled" else args.get("steps")


class Task:
    name: ClassVar[str | None] = None        # the card's ``task``
    default_loss: ClassVar[str] = "cross-entropy"
    ignore_index: ClassVar[int | None] = None  # the target id loss and metrics leave out (padding)
    labels_are_classes: ClassVar[bool] = True  # targets are class ids (False: numbers)
    decodes: ClassVar[bool] = False          # metrics and answers come from decoding (run_metrics)
    class_scores: ClassVar[bool] = False     # the output scores classes: answers name them
    confusion_report: ClassVar[bool] = True  # ``eval --report`` (one label per example) applies
    src_arrays: ClassVar[bool] = False       # ``infer`` decodes an .npz of ``src`` ids into text

    # -- loss and metrics ------------------------------------------------------------------------
    def metrics(self, output: np.ndarray, y: np.ndarray) -> dict:
        """Metrics from one forward pass's ``output`` against the targets ``y``."""
        return {}

    def evaluate(self, loss: str, output: np.ndarray, y: np.ndarray) -> dict:
        return {"loss": numpy_loss(loss, output, y, self.ignore_index), **self.metrics(output, y)}

    def run_metrics(self, session: Any, dataset: Dataset, batch_size: int = 512) -> dict:
        """Metrics that run the model another way than one forward pass (decoding); see ``decodes``."""
        return {}

    # -- opening data ----------------------------------------------------------------------------
    def preparer(self, card: ModelCard) -> Callable[[dict], dict] | None:
        """``prepare(arrays) -> arrays``: the model's inputs and ``y`` from a dataset's named arrays
        (None: the arrays are the inputs)."""
        return None

    def tokenizers(self, card: ModelCard) -> tuple[Tokenizer, Tokenizer | None]:
        """``(source or only tokenizer, target tokenizer or None)`` from the card, or DataError."""
        tok = Tokenizer.from_card(card, "tokens")
        if tok is None:
            raise DataError(NO_TOKENIZER)
        return tok, None

    def text_dataset(self, path: Path, card: ModelCard, inputs: list, progress: bool) -> Dataset:
        """A text file as the model's dataset: ``label<TAB>text`` lines (a text classifier)."""
        src, _ = self.tokenizers(card)
        x, y = text.labelled_arrays(path, src, card.labels, width=card.args.get("steps"), progress=progress)
        return Dataset({inputs[0].name: x}, y, str(path))

    # -- raw feeds -------------------------------------------------------------------------------
    def raw_kind(self, session: Any) -> str:
        """What raw input the model takes: ``text``, ``image``, ``table`` or ``array``."""
        card = session.card
        if card.tokenizer:
            return "text"
        if card.image or self.reads_image(session):
            return "image"
        return "table" if card.features else "array"

    def reads_image(self, session: Any) -> bool:
        """An image model by its input alone (no image rule in its card)."""
        return False

    def text_feeds(self, session: Any, texts: list[str], where: Callable[[int], str]) -> dict:
        """Feeds for raw texts, encoded by the card's tokenizer."""
        src, _ = self.tokenizers(session.card)
        return {session.inputs[0].name: src.encode_batch(texts, width=text_width(session.card), where=where)}

    # -- answers and post-processing -------------------------------------------------------------
    def answers(self, session: Any, feeds: dict, *, beam: int = 1, max_len: int | None = None,
                batch_size: int = 256) -> list[str]:
        """One string per example of ``feeds``."""
        out = session.predict(feeds if len(feeds) > 1 else next(iter(feeds.values())), batch_size)
        return self.answer_rows(out, session.card)

    def answer_rows(self, out: np.ndarray, card: ModelCard) -> list[str]:
        """The main output's rows as strings: their values."""
        return [" ".join(f"{v:.6g}" for v in np.asarray(row, np.float64).reshape(-1)) for row in out]

    def postprocess(self, scores: np.ndarray) -> dict[str, np.ndarray]:
        """Arrays ``infer`` adds to the main output's (a classifier's predictions and confidence)."""
        return {}

    # -- text generation -------------------------------------------------------------------------
    def predicts_next_word(self, card: ModelCard) -> bool:
        """The model continues text word by word (``generate``)."""
        return False

    def next_word_logits(self, session: Any, history: list[int]) -> np.ndarray:
        raise ModelError(f"this model's task {self.name!r} does not predict the next word")


def __getattr__(name: str) -> Any:
    """``task_for``, ``task_of`` and ``TASKS`` lived here before the registry: still found (lazily, the
    registry imports this module)."""
    if name in ("task_for", "task_of", "TASKS"):
        from onnxforge.runtime.tasks import registry  # the registry imports the task classes, which import this

        return getattr(registry, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
