"""Tables read by pyarrow in record batches: statistics against numpy, CSV = Parquet, the spill
to a memory map equal to the in-memory read, and one-line errors naming file, row and column."""

import numpy as np
import pytest

from onnxforge.runtime.data.tables import class_names, read_table, summarize_table, table_columns
from onnxforge.runtime.errors import DataError

pa = pytest.importorskip("pyarrow")
import pyarrow.parquet  # noqa: E402, F401 - loads the submodule the tests use as pa.parquet


def _csv(path, header, rows, sep=","):
    path.write_text("\n".join([sep.join(header)] + [sep.join(map(str, r)) for r in rows]) + "\n")
    return path


@pytest.fixture
def table(tmp_path, rng):
    x = rng.normal(3.0, 2.0, (500, 3)).round(4)
    names = np.array(["setosa", "versicolor", "virginica"])[rng.integers(0, 3, 500)]
    rows = [list(r) + [n] for r, n in zip(x, names)]
    return _csv(tmp_path / "t.csv", ["a", "b", "c", "species"], rows), x, names


def test_summary_matches_numpy_and_keeps_string_classes(table):
    path, x, names = table
    s = summarize_table(path, "species")
    assert s.features == ["a", "b", "c"] and s.rows == 500
    assert s.classes == ["setosa", "versicolor", "virginica"]
    np.testing.assert_allclose(s.mean, x.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(s.std, x.std(axis=0), rtol=1e-10)


def test_read_maps_labels_to_the_cards_names_and_spills_equally(table):
    path, x, names = table
    labels = ["setosa", "versicolor", "virginica"]
    xs, ys = read_table(path, ["a", "b", "c"], "species", labels=labels)
    np.testing.assert_allclose(xs, x.astype(np.float32))
    assert [labels[i] for i in ys] == list(names)
    spilled, ys2 = read_table(path, ["c", "a"], "species", labels=labels, budget=1024)  # past 1 KB: on disk
    assert isinstance(spilled, np.memmap)
    np.testing.assert_array_equal(spilled, xs[:, [2, 0]])
    np.testing.assert_array_equal(ys2, ys)


def test_parquet_and_tsv_read_like_the_csv(table, tmp_path):
    path, x, names = table
    pq = tmp_path / "t.parquet"
    pa.parquet.write_table(pa.table({"a": x[:, 0], "b": x[:, 1], "c": x[:, 2], "species": names}), pq)
    tsv = _csv(tmp_path / "t.tsv", ["a", "b", "c", "species"], [list(r) + [n] for r, n in zip(x, names)], "\t")
    ref = read_table(path, None, "species", labels=["setosa", "versicolor", "virginica"])
    for other in (pq, tsv):
        assert table_columns(other) == ["a", "b", "c", "species"]
        got = read_table(other, None, "species", labels=["setosa", "versicolor", "virginica"])
        np.testing.assert_array_equal(got[0], ref[0])
        np.testing.assert_array_equal(got[1], ref[1])


def test_numeric_class_names_sort_as_numbers():
    assert class_names(["10", "9", "2", "10"]) == ["2", "9", "10"]
    assert class_names(["b", "a", "10"]) == ["10", "a", "b"]


@pytest.mark.parametrize("cell,expected", [
    ("abc", "'{p}' row 3 (line 4), column 'b' holds 'abc', not a number"),
    ("", "'{p}' row 3 (line 4), column 'b' is empty"),
])
def test_a_bad_cell_is_named_by_row_and_column(tmp_path, cell, expected):
    rows = [[1, 2, "x"], [3, 4, "y"], [5, cell, "x"], [7, 8, "y"]]
    p = _csv(tmp_path / "bad.csv", ["a", "b", "label"], rows)
    with pytest.raises(DataError) as err:
        summarize_table(p, "label")
    assert str(err.value).startswith(expected.format(p=p))
    with pytest.raises(DataError, match="row 3"):
        read_table(p, ["a", "b"], "label", labels=["x", "y"])


def test_missing_columns_and_unknown_labels_are_named(table):
    path, _, _ = table
    with pytest.raises(DataError, match=r"has no target column 'kind'; its columns are: a, b, c, species"):
        summarize_table(path, "kind")
    with pytest.raises(DataError, match=r"has no column 'd' \(a feature of the model\)"):
        read_table(path, ["a", "d"], "species", labels=["setosa"])
    with pytest.raises(DataError, match=r"row \d+ \(line \d+\), column 'species' holds label 'versicolor', which is not"):
        read_table(path, ["a"], "species", labels=["setosa", "virginica"])
