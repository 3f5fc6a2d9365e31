"""The command group imports a command's module only when that command runs: ``onnxforge --help``
lists every command from the modules' docstrings without importing any of them."""

from __future__ import annotations

import ast
import importlib
import re
import subprocess
import sys

import pytest

from onnxforge.cli.main import COMMANDS, _summary


def imported_after(args: list[str]) -> set[str]:
    code = ("import sys; from onnxforge.cli.main import cli\n"
            f"try:\n    cli({args!r}, prog_name='onnxforge')\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in sys.modules if m.startswith('onnxforge.cli.')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return set(eval(done.stdout.strip().splitlines()[-1]))  # noqa: S307 - our own printed list


def test_help_lists_every_command_without_importing_one(cli_run):
    assert imported_after(["--help"]) == {"onnxforge.cli.main", "onnxforge.cli._suggest"}  # no command module
    res = cli_run("--help")
    assert res.exit_code == 0
    rows = [line for line in res.output.split("Commands:")[1].splitlines() if line[2:3].strip()]  # not wrapped
    assert [row.split()[0] for row in rows] == sorted(COMMANDS)
    assert re.search(r"^  serve +Models over HTTP with the Open Inference Protocol v2\.$", res.output, re.M)


def test_one_command_imports_its_own_module_only():
    assert imported_after(["doctor", "--help"]) == {"onnxforge.cli.main", "onnxforge.cli.doctor", "onnxforge.cli._common"}


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_each_command_module_defines_the_command_and_its_summary(name):
    module = importlib.import_module(f"onnxforge.cli.{COMMANDS[name]}")
    assert module.command.name == name
    doc = ast.get_docstring(ast.parse(open(module.__file__, encoding="utf-8").read()))
    assert doc.startswith(f"``onnxforge {name}``: ")
    assert _summary(COMMANDS[name]).lower() == doc.split(": ", 1)[1].lower()
