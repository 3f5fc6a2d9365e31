"""Data-parallel steps without Ray: the split step (gradient model, allreduce, update model) on one
worker is the onnx backend's fused step bit for bit, and two worker processes averaging through a
torch.distributed gloo group (a file store, no network) reach the weights of one worker trained
on the combined batch, for plain SGD and AdamW."""

from __future__ import annotations

import os

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from onnxforge.graphs.mlp import mlp
from onnxforge.runtime import Trainer
from onnxforge.runtime.distributed.parallel import DataParallelBackend, LocalCollective, shard
from onnxforge.runtime.errors import ConfigError

torch = pytest.importorskip("torch")


def _data(n=192, features=6, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, features)).astype(np.float32)
    return x, rng.integers(0, classes, n).astype(np.int64)


def _model():
    return mlp(6, [16, 8], 3, seed=3)


def _weights(path) -> dict:
    return {t.name: numpy_helper.to_array(t) for t in onnx.load(str(path)).graph.initializer}


def test_shards_cover_the_batch_once():
    for n in (0, 1, 7, 64):
        for world in (1, 2, 3):
            rows = [r for rank in range(world) for r in range(n)[shard(n, rank, world)]]
            assert rows == list(range(n))


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_one_worker_split_step_equals_fused_step(tmp_path, optimizer):
    x, y = _data()
    result = []
    for split in (False, True):
        t = Trainer(_model(), tmp_path / f"run{split}", optimizer=optimizer, lr=0.05, backend="onnx", progress=False)
        if split:
            t.backend = DataParallelBackend(t.backend.spec, LocalCollective())
        history = t.fit((x, y), epochs=2, batch_size=40)  # 192 = 4 x 40 + 32: a short last batch
        result.append((t.parameters(), history[-1]["loss"]))
    (fused, loss_a), (split, loss_b) = result
    assert loss_a == pytest.approx(loss_b, rel=1e-6)
    assert max(np.abs(fused[k] - split[k]).max() for k in fused) <= 1e-6


def _spawned(rank, world, store, job, errors):
    import torch.distributed as dist

    from onnxforge.runtime.distributed.parallel import TorchCollective
    from onnxforge.runtime.distributed.worker import run_worker

    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    try:
        run_worker(job, TorchCollective())
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("optimizer", ["sgd", pytest.param("adamw", marks=pytest.mark.slow)])
def test_two_gloo_workers_equal_one_worker_with_the_combined_batch(tmp_path, optimizer):
    from onnxforge.runtime.distributed.worker import WorkerJob

    x, y = _data()
    batch, steps = 8, 20  # two workers of 8 = one of 16; 192 / 16 = 12 steps an epoch, 2 epochs = 24 >= 20
    np.savez(tmp_path / "train.npz", x=x, y=y)
    options = dict(optimizer=optimizer, lr=0.05 if optimizer == "sgd" else 0.01, backend="onnx", seed=5)
    job = WorkerJob(_model().SerializeToString(), str(tmp_path / "dp"), options, str(tmp_path / "train.npz"),
                    epochs=2, batch_size=2 * batch)
    torch.multiprocessing.spawn(_spawned, args=(2, str(tmp_path / "store"), job, None), nprocs=2, join=True)
    one = Trainer(_model(), tmp_path / "one", progress=False, **options)
    one.fit((x, y), epochs=2, batch_size=2 * batch)
    assert one.step >= steps
    two = _weights(tmp_path / "dp" / "model.onnx")
    ref = one.parameters()
    assert max(np.abs(two[k] - ref[k]).max() for k in ref) <= 1e-5
    assert not any(p.name.startswith("onnxforge-rank") for p in tmp_path.iterdir())  # scratch only under /tmp
    assert os.path.isfile(tmp_path / "dp" / "checkpoint")


def test_workers_refuse_the_artifacts_backend_and_a_missing_strategy(tmp_path):
    with pytest.raises(ConfigError, match="needs the onnx backend"):
        Trainer(_model(), tmp_path / "a", backend="artifacts", workers=2)
    with pytest.raises(ConfigError, match="needs a strategy"):
        Trainer(_model(), tmp_path / "b", workers=2)
    with pytest.raises(ConfigError, match="positive integer"):
        Trainer(_model(), tmp_path / "c", workers=0)
    assert not any(tmp_path.iterdir())


def test_train_cli_refuses_workers_without_ray_and_the_artifacts_backend(tmp_path, cli_run):
    from onnxforge.runtime.modelio.files import save_model

    save_model(_model(), tmp_path / "m.onnx")
    x, y = _data(32)
    np.savez(tmp_path / "d.npz", x=x, y=y)
    result = cli_run("train", tmp_path / "m.onnx", "--data", tmp_path / "d.npz", "--workers", "2", "--out", tmp_path / "r")
    assert result.exit_code == 2 and "--engine ray" in result.output
    result = cli_run("train", tmp_path / "m.onnx", "--data", tmp_path / "d.npz", "--workers", "2", "--engine", "ray",
                     "--backend", "artifacts", "--out", tmp_path / "r")
    assert result.exit_code == 1 and "needs the onnx backend" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "r").exists()


def test_ray_train_workers_save_on_the_users_checkpoint_policy(tmp_path, monkeypatch):
    """The workers' Trainers get the driver's ``checkpoint_every``, not the default "30s" (the
    driver-to-worker path of RayTrain, with the Ray launch replaced by one in-process worker)."""
    ray = pytest.importorskip("ray")
    pytest.importorskip("ray.train.torch")
    from onnxforge.runtime.distributed import worker
    from onnxforge.runtime.distributed.ray_train import RayTrain
    from onnxforge.runtime.training.config import CHECKPOINT_EVERY, CheckpointPolicy

    policies = []

    class Recording(Trainer):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            policies.append(self.checkpoint_policy)

    monkeypatch.setattr(worker, "Trainer", Recording)
    monkeypatch.setattr(ray, "is_initialized", lambda: True)
    monkeypatch.setattr(RayTrain, "_launch", lambda self, job, workers: worker.run_worker(job, LocalCollective()))
    x, y = _data()
    run = Trainer(_model(), tmp_path / "run", backend="onnx", workers=2, strategy=RayTrain(), progress=False,
                  checkpoint_every="2 epochs")
    run.fit((x, y), epochs=3, batch_size=16)
    assert CheckpointPolicy.parse(CHECKPOINT_EVERY) != CheckpointPolicy(epochs=2)
    assert policies == [CheckpointPolicy(epochs=2)] and run.epoch == 3
