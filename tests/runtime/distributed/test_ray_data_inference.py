"""Ray Data batch inference on a loopback-only local cluster (2 CPUs): the predictor and
``infer --engine ray`` give what ``load(model)`` gives in this process, over Parquet, CSV and an
image folder; bad input is one line; a missing engine names its extra."""

from __future__ import annotations

import json

import numpy as np
import pytest

from onnxforge.graphs.convnet import convnet
from onnxforge.graphs.mlp import mlp
from onnxforge.runtime import load
from onnxforge.runtime.errors import DataError, RuntimeUnavailableError
from onnxforge.runtime.modelio.card import ModelCard
from onnxforge.runtime.modelio.files import save_model

ray = pytest.importorskip("ray")
pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

FEATURES = ["f0", "f1", "f2", "f3"]


@pytest.fixture(scope="module")
def local_ray():
    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False)
    yield ray


def _classifier():
    model = mlp(4, 8, 3, seed=1)
    return ModelCard.from_model(model).updated({"labels": ["cat", "dog", "owl"], "features": FEATURES}).apply(model)


def _table(n=3000, seed=0):
    x = np.random.default_rng(seed).normal(size=(n, 4)).astype(np.float32)
    return x, pa.table({"id": np.arange(n), **{f: x[:, i] for i, f in enumerate(FEATURES)}, "note": ["r"] * n})


def test_predictor_equals_in_process_predict_over_parquet(tmp_path, local_ray):
    from onnxforge.runtime.distributed.ray_data import infer_files

    x, table = _table()
    (tmp_path / "in").mkdir()
    pq.write_table(table.slice(0, 1700), tmp_path / "in" / "a.parquet")
    pq.write_table(table.slice(1700), tmp_path / "in" / "b.parquet")
    model = _classifier()
    done = infer_files(model, str(tmp_path / "in"), tmp_path / "out", batch_size=256, concurrency=1)
    got = pq.read_table(tmp_path / "out").to_pandas().sort_values("id")
    assert done["rows"] == len(x) == len(got)
    assert list(got.columns) == ["id", *FEATURES, "note", "prediction"]
    expected = load(model).predict_labels(x)
    assert (got["prediction"].to_numpy() == expected).all()
    assert len(set(expected)) > 1  # the comparison could fail
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]  # no temporary left


def test_regression_values_from_a_csv_glob(tmp_path, local_ray):
    from onnxforge.runtime.distributed.ray_data import infer_files

    x, table = _table(500, seed=2)
    df = table.to_pandas()
    df.iloc[:250].to_csv(tmp_path / "p1.csv", index=False)
    df.iloc[250:].to_csv(tmp_path / "p2.csv", index=False)
    model = mlp(4, 8, 1, seed=4, task="regression")
    infer_files(model, str(tmp_path / "p*.csv"), tmp_path / "out", batch_size=64, columns=FEATURES)
    got = pq.read_table(tmp_path / "out").to_pandas().sort_values("id")
    csv_x = df[FEATURES].to_numpy(np.float32)
    np.testing.assert_allclose(got["prediction"].to_numpy(), load(model).predict(csv_x)[:, 0], rtol=1e-6, atol=1e-6)


def test_image_folder_decoded_by_the_card_rule(tmp_path, local_ray, cli_run):
    from PIL import Image

    from onnxforge.runtime.tasks.raw import feeds_from_path

    rng = np.random.default_rng(3)
    for cls in ("a", "b"):
        (tmp_path / "imgs" / cls).mkdir(parents=True)
        for i in range(6):
            Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8), "L").save(tmp_path / "imgs" / cls / f"{i}.png")
    model = convnet((1, 8, 8), channels=(4,), classes=2, seed=1)
    model = ModelCard.from_model(model).updated({"labels": ["a", "b"]}).apply(model)
    save_model(model, tmp_path / "m.onnx")
    result = cli_run("infer", tmp_path / "m.onnx", "--engine", "ray", "--input", tmp_path / "imgs", "-o",
                     tmp_path / "out", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["rows"] == 12
    got = pq.read_table(tmp_path / "out").to_pandas()
    assert list(got.columns) == ["path", "prediction"]
    session = load(tmp_path / "m.onnx")
    feeds, names = feeds_from_path(session, tmp_path / "imgs")
    expected = dict(zip(names, session.predict_labels(feeds["x"] if "x" in feeds else next(iter(feeds.values())))))
    assert {p: expected[p] for p in got["path"]} == dict(zip(got["path"], got["prediction"]))


def test_bad_inputs_are_one_line(tmp_path, local_ray, cli_run):
    from onnxforge.runtime.distributed.ray_data import infer_files

    _, table = _table(100)
    (tmp_path / "t").mkdir()
    pq.write_table(table.drop_columns(["f3"]), tmp_path / "t" / "a.parquet")
    with pytest.raises(DataError, match="f3"):
        infer_files(_classifier(), str(tmp_path / "t"), tmp_path / "out")
    with pytest.raises(DataError, match="neither a folder nor a pattern"):
        infer_files(_classifier(), str(tmp_path / "nothing*.parquet"), tmp_path / "out")
    (tmp_path / "t" / "b.csv").write_text("a\n1\n")
    with pytest.raises(DataError, match="one kind"):
        infer_files(_classifier(), str(tmp_path / "t"), tmp_path / "out")
    save_model(_classifier(), tmp_path / "m.onnx")
    result = cli_run("infer", tmp_path / "m.onnx", "--engine", "ray", "--input", tmp_path / "t")
    assert result.exit_code == 2 and "-o" in result.output
    assert not (tmp_path / "out").exists()


def test_a_missing_engine_names_its_extra(monkeypatch):
    import builtins

    from onnxforge.runtime.distributed import _extras

    real = builtins.__import__

    def no_ray(name, *args, **kwargs):
        if name.split(".")[0] in ("ray", "pyspark"):
            raise ImportError(name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    monkeypatch.setattr(_extras.importlib, "import_module", lambda name: no_ray(name))
    with pytest.raises(RuntimeUnavailableError, match=r"pip install 'onnxforge\[ray\]'"):
        _extras.require("ray.data", "Ray Data inference")
    with pytest.raises(RuntimeUnavailableError, match=r"'spark' extra"):
        _extras.require("pyspark.ml.functions", "Spark inference")


@pytest.mark.slow
def test_cli_features_carry_an_id_through_with_relative_paths(tmp_path, local_ray, cli_run, monkeypatch):
    """A model whose card names no features, a CSV with a string id: ``--features`` picks the inputs,
    the id comes through to the Parquet output, and relative paths work (the workers run elsewhere)."""
    x, table = _table(200)
    table = table.set_column(0, "id", pa.array([f"row-{i}" for i in range(200)]))
    import pyarrow.csv as pcsv

    (tmp_path / "in").mkdir()
    pcsv.write_csv(table, tmp_path / "in" / "part.csv")
    model = ModelCard.from_model(mlp(4, 8, 3, seed=1)).updated({"labels": ["cat", "dog", "owl"]}).apply(mlp(4, 8, 3, seed=1))
    save_model(model, tmp_path / "m.onnx")
    monkeypatch.chdir(tmp_path)
    result = cli_run("infer", "m.onnx", "--engine", "ray", "--input", "in", "--features", ",".join(FEATURES), "-o", "out",
                     "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["rows"] == 200, result.output
    assert "\x1b[" not in result.output
    got = pq.read_table(tmp_path / "out").to_pydict()
    order = np.argsort([int(i.split("-")[1]) for i in got["id"]])
    assert [got["id"][i] for i in order] == [f"row-{i}" for i in range(200)]
    assert [got["prediction"][i] for i in order] == [str(v) for v in load(model).predict_labels(x)]
