"""The tasks, each listed once: adding a task is its module (a :class:`~.task.Task` subclass) and
its line below. Every room that needs a model's task asks here."""

from __future__ import annotations

from onnxforge.runtime.modelio.card import ModelCard
from onnxforge.runtime.tasks.captioning import Captioning
from onnxforge.runtime.tasks.classification import Classification
from onnxforge.runtime.tasks.language_model import LanguageModel
from onnxforge.runtime.tasks.regression import Regression
from onnxforge.runtime.tasks.seq2seq import Seq2Seq
from onnxforge.runtime.tasks.tagging import Tagging
from onnxforge.runtime.tasks.task import Task

__all__ = ["TASKS", "task_of", "task_for"]

TASKS: dict[str, Task] = {task.name: task for task in (
    Classification(),
    Regression(),
    Tagging(),
    Seq2Seq(),
    LanguageModel(),
    Captioning(),
) if task.name is not None}

_UNNAMED = Task()  # a model whose card names no task


def task_of(card: ModelCard) -> Task:
    """The task named in the model's ``card`` (the plain :class:`Task` when it names none)."""
    return TASKS.get(card.task or "", _UNNAMED)


def task_for(card: ModelCard, loss: str = "auto") -> Task:
    """The task named in the model's ``card``; for a model without one, the task that ``loss`` implies."""
    named = TASKS.get(card.task or "")
    return named if named is not None else TASKS["regression" if loss == "mse" else "classification"]
