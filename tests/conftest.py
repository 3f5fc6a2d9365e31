"""Shared fixtures. Tests mirror the source tree: tests/runtime, tests/graphs, tests/cli, ..."""

from __future__ import annotations

import importlib.util
import os

import numpy as np
import pytest

from onnxforge.samples import load_digits


def pytest_collection_modifyitems(config, items):
    # torch is part of the dev extra: in CI a missing torch is an install error, never a skip.
    if importlib.util.find_spec("torch") is None and os.environ.get("CI"):
        raise pytest.UsageError("torch is not installed; install the test environment with pip install -e '.[cpu,dev]'")


@pytest.fixture(scope="session")
def digits():
    """((x_train, y_train), (x_test, y_test)) of the bundled 8x8 digits."""
    return load_digits()


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
