"""Batch inference in Spark: :func:`predict_udf` returns the
``pyspark.ml.functions.predict_batch_udf`` of an onnxforge model, scoring a DataFrame's columns::

    udf = predict_udf("model.onnx", ["f0", "f1", "f2", "f3"])
    scored = df.withColumn("prediction", udf("f0", "f1", "f2", "f3"))

The UDF's arguments are the columns named in ``columns`` (their order). Spark calls the factory
function once per Python worker process and caches the predict function it returns, so the
onnxforge session (see :mod:`.scoring`) is made once per executor process, not per batch. The
model travels as a broadcast variable (one copy per executor). Predictions are what
``load(model).predict`` gives, turned into the class name (a string column), the class index
(a long), the value of a one-output regressor (a double) or the row's output (an array of floats).
A column holding a flattened tensor needs its shape in ``tensor_shapes`` (``predict_batch_udf``'s
``input_tensor_shapes``).
"""

from __future__ import annotations

import inspect

from onnxforge.runtime.distributed._extras import quiet_engine_logs, require
from onnxforge.runtime.distributed.scoring import BatchScorer
from onnxforge.runtime.errors import ConfigError
from onnxforge.runtime.modelio.card import ModelCard
from onnxforge.runtime.modelio.files import load_model
from onnxforge.runtime.tasks.registry import task_of

__all__ = ["predict_udf", "return_type_of"]


def return_type_of(model) -> str:
    """The Spark SQL type of the prediction column for ``model`` (a ``ModelProto``), in DDL form."""
    card = ModelCard.from_model(model)
    if task_of(card).class_scores:
        return "string" if card.labels else "bigint"
    outputs = {o.name: o for o in model.graph.output}
    out = outputs.get(card.output) or model.graph.output[0]
    dims = out.type.tensor_type.shape.dim
    one_value = len(dims) == 1 or (len(dims) == 2 and dims[1].HasField("dim_value") and dims[1].dim_value == 1)
    return "double" if one_value else "array<float>"


class _Predict:
    """``predict(*arrays)`` with one positional parameter per column: ``predict_batch_udf`` counts
    the parameters of the function it is given to split a batch into its columns."""

    def __init__(self, scorer: BatchScorer, columns: list[str]):
        self.scorer, self.columns = scorer, columns
        self.__signature__ = inspect.Signature([inspect.Parameter(f"column_{i}", inspect.Parameter.POSITIONAL_ONLY)
                                                for i in range(len(columns))])

    def __call__(self, *arrays):
        return self.scorer(dict(zip(self.columns, arrays)))


def _make_predict_fn(blob, columns: list[str], threads):
    """Spark calls the result once per Python worker and caches the ``predict`` it returns."""

    def make():
        return _Predict(BatchScorer(blob.value if hasattr(blob, "value") else blob, threads=threads), columns)

    return make


def predict_udf(model, columns, *, batch_size: int = 1024, threads: int | None = 1, tensor_shapes=None,
                return_type: str | None = None, verbose: bool = False):
    """The ``predict_batch_udf`` scoring ``columns`` (called with those columns, in that order).
    Spark's own log (the JVM's, py4j's) is turned down to warnings unless ``verbose``."""
    require("pyspark", "Spark inference")
    quiet_engine_logs(verbose)
    require("pyarrow", "Spark inference")
    functions = require("pyspark.ml.functions", "Spark inference")
    sql = require("pyspark.sql", "Spark inference")
    columns = [columns] if isinstance(columns, str) else list(columns or ())
    if not columns:
        raise ConfigError("predict_udf needs the feature columns it is called with; got none")
    types = require("pyspark.sql.types", "Spark inference")
    proto = load_model(model)
    kind = return_type or return_type_of(proto)
    spark_types = {"string": types.StringType(), "bigint": types.LongType(), "double": types.DoubleType(),
                   "array<float>": types.ArrayType(types.FloatType())}
    if kind not in spark_types:
        raise ConfigError(f"return_type must be one of {', '.join(spark_types)}; got {kind!r}")
    blob = proto.SerializeToString()
    active = sql.SparkSession.getActiveSession()
    if active is not None and not verbose:
        active.sparkContext.setLogLevel("WARN")
    shared = active.sparkContext.broadcast(blob) if active is not None else blob
    return functions.predict_batch_udf(_make_predict_fn(shared, columns, threads),
                                       return_type=spark_types[kind], batch_size=batch_size,
                                       input_tensor_shapes=tensor_shapes)
