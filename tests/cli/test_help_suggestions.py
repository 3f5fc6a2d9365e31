"""``onnxforge --help`` lists one line per command; ``train --help`` names the data it reads; a near
miss of a command or option is answered with the one meant."""

from __future__ import annotations

import pytest

from onnxforge.cli._suggest import closest_option, short_summary
from onnxforge.cli.main import COMMANDS


def test_help_lists_one_line_per_command(cli_run):
    result = cli_run("--help")
    assert result.exit_code == 0
    listing = result.output.split("Commands:\n", 1)[1].splitlines()
    assert [line.split()[0] for line in listing if line.strip()] == sorted(COMMANDS)
    assert all(len(line) <= 80 and line.startswith("  ") for line in listing)
    assert "One panel per quantity" not in result.output  # plot's docstring stays in plot --help
    assert "Train a model on .npz, tables, image folders or text" in result.output


def test_train_help_names_the_data_formats(cli_run):
    text = " ".join(cli_run("train", "--help").output.split())
    for fmt in (".npz", ".csv", ".parquet", "class subfolders of images", "label<TAB>text"):
        assert fmt in text, fmt


@pytest.mark.parametrize("args,meant", [(["trian"], "No such command 'trian'. Did you mean 'train'?"),
                                        (["inspct"], "Did you mean 'inspect'?"),
                                        (["train", "--learning-rate", "3", "m.onnx"], "Did you mean --lr?"),
                                        (["train", "--epoch", "3", "m.onnx"], "Did you mean --epochs?"),
                                        (["train", "--batch", "3", "m.onnx"], "Did you mean --batch-size?"),
                                        (["infer", "m.onnx", "--feature", "a"], "Did you mean --features?")])
def test_near_misses_get_a_suggestion(cli_run, args, meant):
    result = cli_run(*args)
    assert result.exit_code == 2
    assert meant in result.output


def test_a_far_miss_gets_no_guess(cli_run):
    result = cli_run("train", "--zzzz", "m.onnx")
    assert result.exit_code == 2 and "No such option '--zzzz'" in result.output and "Did you mean" not in result.output
    assert closest_option("--learning-rate", ["--lr", "--epochs"]) == "--lr"


def test_short_summary_is_the_first_sentence_within_the_width():
    assert short_summary("Draw curves. More text.\n\nAnother paragraph.", 40) == "Draw curves."
    assert short_summary("a " * 50, 20).endswith("...") and len(short_summary("a " * 50, 20)) <= 20
