"""Ray Data at scale (slow): a million-row Parquet dataset scored on a loopback-only local cluster
(2 CPUs) gives exactly the labels ``load(model).predict_labels`` gives in this process; the rows/s of
both and the driver's peak-memory growth are printed side by side (reported, not asserted: Ray's own
driver bookkeeping is most of that growth)."""

from __future__ import annotations

import resource
import time

import numpy as np
import pytest

from onnxforge.graphs.mlp import mlp
from onnxforge.runtime import load
from onnxforge.runtime.modelio.card import ModelCard

ray = pytest.importorskip("ray")
pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

ROWS = 1_000_000
FEATURES = ["f0", "f1", "f2", "f3", "f4", "f5", "f6", "f7"]


@pytest.mark.slow
def test_a_million_rows_on_ray_data_equal_in_process_predictions(tmp_path, capsys):
    from onnxforge.runtime.distributed.ray_data import infer_files

    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False)
    x = np.random.default_rng(7).normal(size=(ROWS, len(FEATURES))).astype(np.float32)
    (tmp_path / "in").mkdir()
    for part, rows in enumerate(np.array_split(np.arange(ROWS), 8)):
        pq.write_table(pa.table({"id": rows, **{f: x[rows, i] for i, f in enumerate(FEATURES)}}),
                       tmp_path / "in" / f"part{part}.parquet")
    model = mlp(len(FEATURES), [32], 4, seed=3)
    model = ModelCard.from_model(model).updated({"labels": ["a", "b", "c", "d"], "features": FEATURES}).apply(model)

    driver_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    done = infer_files(model, str(tmp_path / "in"), tmp_path / "out", batch_size=8192, concurrency=1)
    driver_growth_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - driver_before) / 1024

    start = time.perf_counter()
    expected = load(model).predict_labels(x)
    local_rows_per_s = ROWS / (time.perf_counter() - start)

    got = pq.read_table(tmp_path / "out", columns=["id", "prediction"]).to_pandas().sort_values("id")
    assert done["rows"] == ROWS == len(got)
    assert (got["prediction"].to_numpy() == expected).all()
    assert len(set(expected)) == 4  # the comparison could fail
    with capsys.disabled():
        print(f"\nRay Data: {done['rows_per_s']:,.0f} rows/s over {ROWS:,} rows (batch 8192, 1 actor); "
              f"in-process predict: {local_rows_per_s:,.0f} rows/s; driver peak grew {driver_growth_mb:.0f} MB")
