"""``infer --features a,b,c`` reads a table's inputs by name, and the table's other columns (an id, a
note) come through to the output: the printed lines, ``--json`` and ``-o`` tables."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest

from onnxforge.graphs.mlp import mlp
from onnxforge.runtime import load
from onnxforge.runtime.modelio.card import ModelCard
from onnxforge.runtime.modelio.files import save_model

FEATURES = ["f0", "f1", "f2", "f3"]


@pytest.fixture()
def job(tmp_path):
    x = np.random.default_rng(0).normal(size=(30, 4)).astype(np.float32)
    table = pa.table({"id": [f"r{i}" for i in range(30)], **{f: x[:, i] for i, f in enumerate(FEATURES)},
                      "note": [f"n{i % 3}" for i in range(30)]})
    pcsv.write_csv(table, tmp_path / "t.csv")
    model = mlp(4, 8, 3, seed=1)
    model = ModelCard.from_model(model).updated({"labels": ["cat", "dog", "owl"]}).apply(model)  # no features
    save_model(model, tmp_path / "m.onnx")
    return tmp_path, x, [str(v) for v in load(model).predict_labels(x)]


def test_features_pick_the_inputs_and_the_other_columns_come_through(job, cli_run):
    root, _, expected = job
    result = cli_run("infer", root / "m.onnx", "--input", root / "t.csv", "--features", ",".join(FEATURES))
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "id\tnote\tprediction"
    assert lines[1:] == [f"r{i}\tn{i % 3}\t{expected[i]}" for i in range(30)]
    doc = json.loads(cli_run("infer", root / "m.onnx", "--input", root / "t.csv", "--features", ",".join(FEATURES),
                             "--json").output)
    assert doc["predictions"] == expected and doc["columns"]["id"] == [f"r{i}" for i in range(30)]
    for out in ("p.csv", "p.parquet"):
        assert cli_run("infer", root / "m.onnx", "--input", root / "t.csv", "--features", ",".join(FEATURES),
                       "-o", root / out).exit_code == 0
        table = pq.read_table(root / out) if out.endswith("parquet") else pcsv.read_csv(root / out)
        assert table.column_names == ["id", "note", "prediction"]
        assert table.column("prediction").to_pylist() == expected


def test_a_card_without_features_names_the_option(job, cli_run):
    root, _, _ = job
    result = cli_run("infer", root / "m.onnx", "--input", root / "t.csv")
    assert result.exit_code == 2
    assert "name them with --features, e.g. --features id,f0,f1" in result.output
    assert "Session.predict" not in result.output.split("(")[0]


def test_features_must_exist_in_the_table(job, cli_run):
    root, _, _ = job
    result = cli_run("infer", root / "m.onnx", "--input", root / "t.csv", "--features", "f0,f1,f2,nope")
    assert result.exit_code == 2 and "has no column 'nope'" in result.output
