"""The Trainer's state: one object a checkpoint keeps and a resume hands back; nothing outside
trainer.py reaches into a Trainer's private members."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from onnxforge.runtime.errors import CheckpointError
from onnxforge.runtime.training.state import TrainingState

ROOT = Path(__file__).resolve().parents[3]


def test_checkpoint_properties_round_trip_with_the_within_epoch_progress():
    state = TrainingState(3, 45, [{"epoch": e, "loss": 1.0 / e} for e in (1, 2, 3)], {"epochs": 5, "lr": 0.1}, 5)
    props = state.checkpoint_properties({"bit_generator": "PCG64"}, epoch_step=7, epoch_loss=(2.5, 70))
    assert json.loads(props["rng"]) == {"bit_generator": "PCG64"} and props["epoch_step"] == "7"
    back = TrainingState.from_checkpoint(props, Path("ckpt"))
    assert (back.epoch, back.step, back.history, back.record, back.schedule_epochs) == \
        (3, 45, state.history, state.record, 5)
    assert back.take_within_epoch() == (7, (2.5, 70)) and back.take_within_epoch() == (0, (0.0, 0))
    assert back.started and not TrainingState().started


def test_history_is_cut_at_the_checkpoint_epoch_and_a_record_may_be_given():
    props = {"epoch": "1", "step": "9", "history": json.dumps([{"epoch": 1}, {"epoch": 2}]), "rng": "{}"}
    state = TrainingState.from_checkpoint(props, Path("ckpt"), record={"epochs": 4, "schedule_epochs": 6})
    assert state.history == [{"epoch": 1}] and state.schedule_epochs == 6


@pytest.mark.parametrize("props", [{}, {"epoch": "x", "step": "1"}, {"epoch": "1", "step": "2", "config": "{"}])
def test_a_checkpoint_without_progress_is_one_clear_error(props):
    with pytest.raises(CheckpointError, match=r"^checkpoint 'c' lacks the run's progress"):
        TrainingState.from_checkpoint(props, Path("c"))


def test_no_module_but_trainer_py_touches_a_private_member_of_a_trainer():
    offenders = []
    for folder in ("runtime", "graphs", "plugins", "cli", "samples", "tests"):
        for path in (ROOT / folder).rglob("*.py"):
            if path.name == "trainer.py" and path.parent.name == "training":
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                if (isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__")
                        and isinstance(node.value, ast.Name) and node.value.id in ("trainer", "tr")):
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.value.id}.{node.attr}")
                if (isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__")
                        and isinstance(node.value, ast.Attribute) and node.value.attr == "trainer"):
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} .trainer.{node.attr}")
    assert not offenders, offenders
