"""The task registry: every task one class, looked up by the card; no room compares task names."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

from onnxforge.runtime.modelio.card import ModelCard
from onnxforge.runtime.tasks.registry import TASKS, task_for, task_of
from onnxforge.runtime.tasks.task import Task

ROOT = Path(__file__).resolve().parents[3]


def test_each_task_is_one_class_under_its_own_name():
    assert set(TASKS) == {"classification", "regression", "tagging", "seq2seq", "language_model", "captioning"}
    for name, task in TASKS.items():
        assert isinstance(task, Task) and task.name == name
    assert len({type(t) for t in TASKS.values()}) == len(TASKS)


def test_a_card_without_a_task_gets_the_plain_task_or_the_one_its_loss_implies():
    card = ModelCard()
    assert type(task_of(card)) is Task
    assert task_for(card, "mse").name == "regression" and task_for(card).name == "classification"
    assert task_of(ModelCard(task="seq2seq")).src_arrays and task_of(ModelCard(task="tagging")).ignore_index == 0


@pytest.mark.parametrize("name, output, y, expected", [
    ("classification", np.array([[2.0, 1.0], [0.0, 3.0]]), np.array([0, 0]), {"accuracy": 0.5}),
    ("tagging", np.array([[[2.0, 1.0], [0.0, 3.0]]]), np.array([[0, 1]]), {"accuracy": 1.0}),  # id 0 is padding
    ("regression", np.array([[1.0], [3.0]]), np.array([2.0, 3.0]), {"mae": 0.5, "rmse": np.sqrt(0.5)}),
])
def test_metrics_of_each_task_against_numpy(name, output, y, expected):
    got = TASKS[name].metrics(output, y)
    assert got.keys() == expected.keys()
    for k, v in expected.items():
        assert got[k] == pytest.approx(v)


def test_classifier_answers_name_the_class_and_postprocess_gives_softmax_picks():
    scores = np.array([[0.0, 2.0], [3.0, 1.0]])
    assert TASKS["classification"].answer_rows(scores, ModelCard(labels=["cat", "dog"])) == ["dog", "cat"]
    post = TASKS["classification"].postprocess(scores)
    e = np.exp(scores - scores.max(axis=1, keepdims=True))
    np.testing.assert_allclose(post["confidence"], (e / e.sum(axis=1, keepdims=True)).max(axis=1))
    assert post["predictions"].tolist() == [1, 0] and Task().postprocess(scores) == {}


def _task_comparisons(path: Path) -> list[int]:
    """Lines comparing a value named ``task`` (or ``.task``) with ==, !=, in, not in."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Compare) and any(isinstance(op, (ast.Eq, ast.NotEq, ast.In, ast.NotIn)) for op in node.ops):
            sides = [node.left, *node.comparators]
            if any((isinstance(s, ast.Name) and s.id == "task") or (isinstance(s, ast.Attribute) and s.attr == "task")
                   for s in sides):
                found.append(node.lineno)
    return found


def test_at_most_three_task_comparisons_are_left_in_the_house():
    hits = {str(p.relative_to(ROOT)): lines for folder in ("runtime", "graphs", "plugins", "cli", "samples")
            for p in (ROOT / folder).rglob("*.py") if (lines := _task_comparisons(p))}
    assert sum(map(len, hits.values())) <= 3, hits
