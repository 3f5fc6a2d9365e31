"""A model whose batch dimension is fixed (``torch.onnx.export`` without dynamic axes): trained
with its own batch size, every batch full (the last partial one is left out), evaluated in chunks
of that size; any other --batch-size is refused in one line before any work."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

from onnxforge.graphs import mlp
from onnxforge.runtime import load


def _fixed(model: onnx.ModelProto, batch: int) -> onnx.ModelProto:
    for vi in [*model.graph.input, *model.graph.output]:
        vi.type.tensor_type.shape.dim[0].Clear()
        vi.type.tensor_type.shape.dim[0].dim_value = batch
    return model


@pytest.fixture()
def job(tmp_path, digits):
    (x, y), (xt, yt) = digits
    np.savez(tmp_path / "d.npz", x=x[:99], y=y[:99])
    np.savez(tmp_path / "t.npz", x=xt[:37], y=yt[:37])
    onnx.save(_fixed(mlp(64, [16], 10, seed=2), 4), str(tmp_path / "fixed.onnx"))
    return tmp_path


def test_another_batch_size_is_refused_before_any_work(cli_run, job):
    result = cli_run("train", str(job / "fixed.onnx"), "--data", str(job / "d.npz"),
                     "--out", str(job / "run"), "--quiet")
    assert result.exit_code == 2
    assert result.output.strip() == ("Error: the model's inputs have a fixed batch of 4 (exported without a dynamic "
                                     "batch axis); train it with --batch-size 4, or free the batch first: onnxforge convert MODEL.onnx "
                                     "--dynamic-batch -o OUT.onnx")
    assert not (job / "run").exists()


def test_its_own_batch_size_trains_on_full_batches_and_evaluates_every_example(cli_run, job):
    result = cli_run("train", str(job / "fixed.onnx"), "--data", str(job / "d.npz"), "--val",
                     str(job / "t.npz"), "--batch-size", "4", "--epochs", "2", "--out",
                     str(job / "run"), "--quiet", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["steps"] == 2 * (99 // 4)  # the 3 examples left over never reach ORT
    out = cli_run("eval", str(job / "run"), "--data", str(job / "t.npz"), "--json")
    assert out.exit_code == 0, out.output
    got = json.loads(out.output)
    assert got["examples"] == 37
    # reference: the same weights with a dynamic batch, all 37 rows at once
    model = onnx.load(str(job / "run" / "model.onnx"))
    for vi in [*model.graph.input, *model.graph.output]:
        vi.type.tensor_type.shape.dim[0].Clear()
        vi.type.tensor_type.shape.dim[0].dim_param = "N"
    t = np.load(job / "t.npz")
    logits = load(model).run({"x": t["x"]})["logits"]
    assert got["accuracy"] == pytest.approx(float((logits.argmax(1) == t["y"]).mean()))
    assert json.loads((job / "run" / "metrics.json").read_text())["history"][-1]["val_accuracy"] == pytest.approx(got["accuracy"])
