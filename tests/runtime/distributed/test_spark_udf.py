"""The Spark predict_batch_udf of an onnxforge model, in local[2] mode on the loopback address:
row for row what ``load(model)`` predicts in this process (class names, values, array columns)."""

from __future__ import annotations

import numpy as np
import pytest

from onnxforge.graphs.mlp import mlp
from onnxforge.runtime import load
from onnxforge.runtime.errors import ConfigError
from onnxforge.runtime.modelio.card import ModelCard

pytest.importorskip("pyspark")
pd = pytest.importorskip("pandas")

COLUMNS = ["f0", "f1", "f2", "f3"]


@pytest.fixture(scope="module")
def spark():
    from pyspark.sql import SparkSession

    session = (SparkSession.builder.master("local[2]").appName("onnxforge-tests")
               .config("spark.driver.host", "127.0.0.1").config("spark.driver.bindAddress", "127.0.0.1")
               .config("spark.ui.enabled", "false").config("spark.sql.shuffle.partitions", "2").getOrCreate())
    yield session
    session.stop()


@pytest.mark.slow  # a JVM start: about 90 s on the loaded 2-core machine
def test_udf_equals_predict_row_for_row(spark):
    from pyspark.sql import functions as F

    from onnxforge.runtime.distributed.spark import predict_udf

    x = np.random.default_rng(0).normal(size=(600, 4)).astype(np.float32)
    df = spark.createDataFrame(pd.DataFrame({"id": np.arange(600), **{c: x[:, i] for i, c in enumerate(COLUMNS)}}))
    classifier = mlp(4, 8, 3, seed=1)
    classifier = ModelCard.from_model(classifier).updated({"labels": ["cat", "dog", "owl"]}).apply(classifier)
    regressor = mlp(4, 8, 1, seed=2, task="regression")
    wide = mlp(4, 8, 2, seed=5, task="regression")
    scored = (df.withColumn("label", predict_udf(classifier, COLUMNS, batch_size=64)(*COLUMNS))
              .withColumn("value", predict_udf(regressor, COLUMNS)(*COLUMNS))
              .withColumn("pair", predict_udf(wide, "v", tensor_shapes=[[4]])(F.array(*COLUMNS).alias("v")))
              .orderBy("id").toPandas())
    names = load(classifier).predict_labels(x)
    assert (scored["label"].to_numpy() == names).all() and len(set(names)) > 1
    np.testing.assert_allclose(scored["value"].to_numpy(), load(regressor).predict(x)[:, 0], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(np.stack(scored["pair"].to_numpy()), load(wide).predict(x), rtol=1e-6, atol=1e-6)


def test_udf_needs_its_columns():
    from onnxforge.runtime.distributed.spark import predict_udf

    with pytest.raises(ConfigError, match="feature columns"):
        predict_udf(mlp(4, 8, 3), [])
