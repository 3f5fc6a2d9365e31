"""The one batched-inference loop: chunks of rows, results put back together in order."""

from __future__ import annotations

import numpy as np
import pytest

from onnxforge.runtime import InputError
from onnxforge.runtime.inference.batches import common_rows, in_batches, stitch


def test_chunks_cover_every_row_once_and_stitch_back_in_order():
    x = np.arange(23 * 2).reshape(23, 2)
    seen = []
    parts = in_batches(lambda f: seen.append(len(f["x"])) or f["x"] * 10, {"x": x}, 5)
    np.testing.assert_array_equal(stitch(parts, 23, "y"), x * 10)
    assert seen == [5, 5, 5, 5, 3]
    one = list(in_batches(lambda f: f["x"][:1], {"x": x}, None))  # no batch size: one call, as it is
    assert len(one) == 1 and one[0][1].shape == (1, 2)
    assert stitch(iter(one), 23, "y").shape == (1, 2)


def test_parts_without_a_row_per_input_row_and_bad_sizes_are_refused():
    x = np.zeros((7, 3))
    with pytest.raises(InputError, match="output 'y' does not have one row per input row"):
        stitch(in_batches(lambda f: f["x"][:1], {"x": x}, 3), 7, "y")
    for bad in (0, -1, 2.5, True, "4"):
        with pytest.raises(InputError, match="batch_size must be a positive integer"):
            list(in_batches(lambda f: f, {"x": x}, bad))
    with pytest.raises(InputError, match="equally many rows"):
        common_rows({"a": np.zeros(3), "b": np.zeros(4)})
