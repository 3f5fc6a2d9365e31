"""Shared fixtures. Tests mirror the source tree: tests/runtime, tests/graphs, tests/cli, ..."""

from __future__ import annotations

import importlib.util
import os
import re
import sys

import numpy as np
import pytest

from onnxforge.samples import load_digits


_HAS_TORCH = importlib.util.find_spec("torch") is not None
# The dev extra brings PyTorch where its CPU build is at hand (CPython < 3.12, see pyproject.toml).
_TORCH_EXPECTED = sys.version_info < (3, 12)
_TORCH_IMPORT = re.compile(r"^(import torch|from torch[ .]|torch = )", re.M)
_not_collected: list[str] = []


def pytest_ignore_collect(collection_path, config):
    """Without PyTorch (Pythons the dev extra brings none for), skip collecting the files that import it."""
    if _HAS_TORCH or _TORCH_EXPECTED or collection_path.suffix != ".py" or not collection_path.name.startswith(("test_", "_")):
        return None
    if _TORCH_IMPORT.search(collection_path.read_text(encoding="utf-8")):
        _not_collected.append(collection_path.name)
        return True
    return None


def pytest_configure(config):
    config.addinivalue_line("markers", "artifacts: runs the artifacts training backend (needs onnxruntime-training's "
                                       "training API; skipped, with the reason, where the installed runtime has none)")


def _artifacts_missing() -> str | None:
    """Why the artifacts training backend cannot run here (None: it can)."""
    from onnxforge.runtime.training.backends import BACKENDS

    return BACKENDS["artifacts"].available()


def pytest_collection_modifyitems(config, items):
    needs_artifacts = [item for item in items if item.get_closest_marker("artifacts")]
    reason = _artifacts_missing() if needs_artifacts else None
    if reason is not None:  # CPython 3.13's maintained onnxruntime: the onnx backend only
        skip = pytest.mark.skip(reason=f"the artifacts backend cannot run here: {reason}")
        for item in needs_artifacts:
            item.add_marker(skip)
    if _HAS_TORCH:
        return
    # torch is part of the dev extra where it installs: in CI a missing torch is an install error, never a skip.
    if _TORCH_EXPECTED and os.environ.get("CI"):
        raise pytest.UsageError("torch is not installed; install the test environment with pip install -e '.[cpu,dev]'")
    marked = [item for item in items if item.get_closest_marker("torch")]
    _deselected.extend(item.nodeid for item in marked)
    if marked:
        config.hook.pytest_deselected(items=marked)
        items[:] = [item for item in items if not item.get_closest_marker("torch")]


_skipped: list[str] = []
_deselected: list[str] = []


def pytest_runtest_logreport(report):
    # JAX is an optional benchmark peer the dev extra does not bring (its tests say "an optional peer")
    if report.skipped and "optional peer" not in str(report.longrepr):
        _skipped.append(report.nodeid)


def pytest_sessionfinish(session, exitstatus):
    # On the full CI leg (CPython < 3.12, every extra the dev extra brings installed) a skipped test is a
    # missing install, not a pass: fail the run and name them.
    if os.environ.get("CI") and _TORCH_EXPECTED and _skipped and session.exitstatus == 0:
        print(f"\n{len(_skipped)} tests skipped on the full CI leg (an install step is missing): "
              + ", ".join(_skipped[:10]))
        session.exitstatus = 1


_NO_TORCH = ("PyTorch is not installed (the dev extra brings it on CPython 3.10-3.11): the tests that compare "
             "against it are not collected or deselected; the CPython 3.11 CI leg runs them")


def pytest_report_header(config):
    return _NO_TORCH if not _HAS_TORCH else None


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """The header's word on PyTorch again at the end, where ``-q`` (which hides the header) shows it,
    with what it left out."""
    if _HAS_TORCH:
        return
    terminalreporter.write_line(f"{_NO_TORCH} ({len(_not_collected)} test files not collected, "
                                f"{len(_deselected)} tests deselected)")


@pytest.fixture(scope="session")
def digits():
    """((x_train, y_train), (x_test, y_test)) of the bundled 8x8 digits."""
    return load_digits()


@pytest.fixture(scope="session")
def cli_run():
    """Run ``onnxforge ARGS...`` in this process through click's CliRunner and return the result
    (``exit_code``, ``output``; ``stderr`` apart). Arguments are turned into strings; an exception
    that is not a clean exit propagates, since a traceback is a bug."""
    from click.testing import CliRunner

    from onnxforge.cli.main import cli

    runner = CliRunner()

    def run(*args, catch_exceptions: bool = False, **kwargs):
        return runner.invoke(cli, [str(a) for a in args], catch_exceptions=catch_exceptions, **kwargs)

    return run


@pytest.fixture(params=["onnx", pytest.param("artifacts", marks=pytest.mark.artifacts)])
def training_backend(request) -> str:
    """Each training backend by name: ``onnx`` everywhere, ``artifacts`` where onnxruntime-training is
    installed (skipped with the reason elsewhere; on the full CI leg a skip fails the run)."""
    return request.param


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
