"""``serve BASE --adapters DIR``: two trained adapters over one base session, each request equal to its
adapter's merged model (HTTP and gRPC), the base without one; --watch adds and drops adapter files;
bad files and requests get clear errors; per-adapter metrics."""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import tritonclient.grpc as grpcclient
from _http import get, post

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "adapters"))
from _lora_models import classifier, data

from onnxforge.runtime import Trainer
from onnxforge.runtime.adapters import LoRA


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    from onnxforge.runtime.server.app import Server, ServerConfig

    root = tmp_path_factory.mktemp("adapters")
    onnx.save(classifier(), root / "base.onnx")
    x, y = data()
    runs = {}
    for name, lora, labels in (("a", LoRA(4, alpha=8), y), ("b", LoRA(2, targets="W[12]"), (y + 1) % 3)):
        Trainer(root / "base.onnx", root / name, loss="cross-entropy", lr=0.02, progress=False, lora=lora).fit(
            (x, labels), epochs=3, batch_size=32)
        runs[name] = ort.InferenceSession(str(root / name / "model.onnx"))
    folder = root / "served"
    folder.mkdir()
    for name in ("a", "b"):
        shutil.copy(root / name / "adapters.onnx_adapter", folder / f"{name}.onnx_adapter")
    srv = Server([str(root / "base.onnx")], ServerConfig(port=0, grpc_port=0, device="cpu", max_batch=4, watch=True,
                                                         watch_interval_s=0.1, adapters=str(folder)))
    srv.start()
    yield srv, runs, root, folder
    srv.stop()


def _infer(url, x, adapter=None):
    doc = {"inputs": [{"name": "x", "datatype": "FP32", "shape": list(x.shape), "data": x.ravel().tolist()}]}
    if adapter is not None:
        doc["parameters"] = {"adapter": adapter}
    status, _, body = post(url, "/v2/models/base/infer", json.dumps(doc).encode(), {"Content-Type": "application/json"})
    answer = json.loads(body)
    if status != 200:
        return status, answer["error"]
    out = answer["outputs"][0]
    return status, np.array(out["data"], np.float32).reshape(out["shape"])


def _until(check, seconds=10.0):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if check():
            return True
        time.sleep(0.05)
    return False


def test_each_adapter_equals_its_merged_model_and_the_base_answers_without(served):
    srv, runs, root, _ = served
    x = data(6, seed=4)[0]
    base = ort.InferenceSession(str(root / "base.onnx")).run(None, {"x": x})[0]
    status, got = _infer(srv.url, x)
    assert status == 200
    np.testing.assert_allclose(got, base, rtol=0, atol=1e-5)
    for name in ("a", "b"):
        want = runs[name].run(None, {"x": x})[0]
        assert np.abs(want - base).max() > 1e-2  # the adapters changed something
        status, got = _infer(srv.url, x, name)
        assert status == 200
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-4)
    with grpcclient.InferenceServerClient(srv.grpc_address) as client:
        item = grpcclient.InferInput("x", list(x.shape), "FP32")
        item.set_data_from_numpy(x)
        result = client.infer("base", [item], parameters={"adapter": "b"})
        np.testing.assert_allclose(result.as_numpy("logits"), runs["b"].run(None, {"x": x})[0], rtol=0, atol=1e-4)
        np.testing.assert_allclose(client.infer("base", [item]).as_numpy("logits"), base, rtol=0, atol=1e-5)
        with pytest.raises(grpcclient.InferenceServerException, match="no adapter 'zzz'; its adapters are: a, b"):
            client.infer("base", [item], parameters={"adapter": "zzz"})


def test_bad_requests_are_named(served):
    srv = served[0]
    x = data(2)[0]
    assert _infer(srv.url, x, "nope") == (404, "model has no adapter 'nope'; its adapters are: a, b")
    status, error = _infer(srv.url, x, 7)
    assert status == 400 and "'adapter' must be a string" in error
    status, body = get(srv.url, "/v2/models/base")
    assert status == 200 and json.loads(body)["parameters"]["adapters"] == ["a", "b"]


def test_watch_adds_drops_and_refuses(served):
    srv, runs, root, folder = served
    x = data(3, seed=8)[0]
    shutil.copy(folder / "a.onnx_adapter", folder / "c.onnx_adapter")
    (folder / "broken.onnx_adapter").write_bytes(b"not an adapter at all")
    assert _until(lambda: _infer(srv.url, x, "c")[0] == 200)
    np.testing.assert_allclose(_infer(srv.url, x, "c")[1], runs["a"].run(None, {"x": x})[0], rtol=0, atol=1e-4)
    (folder / "c.onnx_adapter").unlink()
    assert _until(lambda: _infer(srv.url, x, "c")[0] == 404)
    assert _infer(srv.url, x, "broken")[0] == 404  # refused, never served
    assert _infer(srv.url, x, "a")[0] == 200
    (folder / "broken.onnx_adapter").unlink()
    metrics = get(srv.url, "/metrics")[1].decode()
    assert 'onnxforge_adapter_requests_total{adapter="a",model="base",outcome="success"}' in metrics
    assert 'onnxforge_adapter_requests_total{adapter="",model="base",outcome="success"}' in metrics
    assert 'onnxforge_adapter_loads_total{adapter="broken",model="base",outcome="refused"} 1.0' in metrics
    assert 'onnxforge_adapter_loads_total{adapter="c",model="base",outcome="dropped"} 1.0' in metrics


def test_adapter_files_that_do_not_fit_the_base_are_refused(tmp_path):
    from onnxforge.runtime.adapters import write_adapter
    from onnxforge.runtime.server.adapters import AdapterServing

    onnx.save(classifier(), tmp_path / "base.onnx")
    (tmp_path / "ad").mkdir()
    write_adapter(tmp_path / "ad" / "wrong.onnx_adapter",
                  {"W1.lora_A": np.zeros((5, 2), np.float32), "W1.lora_B": np.zeros((2, 16), np.float32)}, use_ort=False)
    write_adapter(tmp_path / "ad" / "half.onnx_adapter", {"W1.lora_A": np.zeros((8, 2), np.float32)}, use_ort=False)
    write_adapter(tmp_path / "ad" / "alien.onnx_adapter", {"Q.lora_A": np.zeros((8, 2), np.float32)}, use_ort=False)
    serving = AdapterServing([tmp_path / "base.onnx"], tmp_path / "ad", device="cpu")
    assert serving.session.adapters == {}
    assert serving.session.check("ok", {"W1.lora_A": np.ones((8, 3)), "W1.lora_B": np.ones((3, 16))})
    with pytest.raises(Exception, match="needs A \\[8, r\\] and B \\[r, 16\\]; the file has A \\[5, 2\\]"):
        serving.session.check("wrong", {"W1.lora_A": np.zeros((5, 2)), "W1.lora_B": np.zeros((2, 16))})
    from onnxforge.runtime.errors import ConfigError

    with pytest.raises(ConfigError, match="one base model; 2 were given"):
        onnx.save(classifier(), tmp_path / "other.onnx")
        AdapterServing([tmp_path / "base.onnx", tmp_path / "other.onnx"], tmp_path / "ad")


def test_a_base_in_external_data_is_served_from_its_files(served, tmp_path):
    from onnxforge.runtime.server.adapters import AdapterServing

    srv, runs, root, folder = served
    onnx.save_model(classifier(), tmp_path / "base.onnx", save_as_external_data=True, all_tensors_to_one_file=True,
                    location="base.onnx.data", size_threshold=0)
    serving = AdapterServing([tmp_path / "base.onnx"], folder, device="cpu")
    assert set(serving.session.constants) >= {"W1", "W2", "W3"} and [i.name for i in serving.session.inputs] == ["x"]
    serving.session.warmup()
    x = data(5, seed=6)[0]
    np.testing.assert_allclose(serving.session.run({"x": x}, adapter="a")["logits"], runs["a"].run(None, {"x": x})[0],
                               rtol=0, atol=1e-4)
    base = ort.InferenceSession(str(root / "base.onnx")).run(None, {"x": x})[0]
    np.testing.assert_allclose(serving.session.run({"x": x})["logits"], base, rtol=0, atol=1e-5)
