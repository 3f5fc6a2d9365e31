"""The model repository: Triton's layout with versions, plain files, run folders; tritonclient's
HTTP client lists, loads and unloads through the repository routes."""

from __future__ import annotations

import numpy as np
import pytest
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from onnxforge.graphs import mlp
from onnxforge.runtime import load
from onnxforge.runtime.errors import ConfigError
from onnxforge.runtime.modelio.files import save_model
from onnxforge.runtime.server.repository import scan


@pytest.fixture
def repo(tmp_path):
    root = tmp_path / "repo"
    for version, seed in (("1", 1), ("2", 2), ("10", 3)):
        (root / "clf" / version).mkdir(parents=True)
        save_model(mlp(8, [4], 3, seed=seed), root / "clf" / version / "model.onnx")
    save_model(mlp(8, [4], 3, seed=4), root / "plain.onnx")
    return root


def _infer(client, name, x, version=""):
    item = httpclient.InferInput("x", list(x.shape), "FP32")
    item.set_data_from_numpy(x)
    return client.infer(name, [item], model_version=version).as_numpy("logits")


def test_versions_newest_by_default_and_each_by_number(repo, start_server, triton):
    srv = start_server([repo])
    client = triton(srv.url)
    x = np.random.default_rng(0).standard_normal((3, 8)).astype(np.float32)
    want = {v: load(repo / "clf" / v / "model.onnx", device="cpu").run({"x": x})["logits"] for v in ("1", "2", "10")}
    np.testing.assert_array_equal(_infer(client, "clf", x), want["10"])  # 10 is newer than 2
    for version, expected in want.items():
        np.testing.assert_array_equal(_infer(client, "clf", x, version), expected)
    assert client.get_model_metadata("clf")["versions"] == ["1", "2", "10"]
    assert client.get_model_metadata("clf", "1")["versions"] == ["1", "2", "10"]
    assert client.is_model_ready("clf", "2") and not client.is_model_ready("clf", "3")
    with pytest.raises(InferenceServerException, match="model 'clf' has no version '3'; it has: 1, 2, 10"):
        _infer(client, "clf", x, "3")


def test_index_load_and_unload_with_tritonclient(repo, start_server, triton):
    srv = start_server([repo], repository_control=True)
    client = triton(srv.url)
    index = client.get_model_repository_index()
    assert [(m["name"], m["version"], m["state"]) for m in index] == [
        ("clf", "1", "READY"), ("clf", "2", "READY"), ("clf", "10", "READY"), ("plain", "1", "READY")]
    client.unload_model("plain")
    assert not client.is_model_ready("plain")
    x = np.ones((1, 8), np.float32)
    with pytest.raises(InferenceServerException, match="model 'plain' is not loaded"):
        _infer(client, "plain", x)
    index = client.get_model_repository_index()
    assert {"name": "plain", "version": "", "state": "UNAVAILABLE", "reason": "unloaded"} in index
    # a new version appears on disk; load picks it (and the file now there) up
    (repo / "clf" / "11").mkdir()
    save_model(mlp(8, [4], 3, seed=9), repo / "clf" / "11" / "model.onnx")
    client.load_model("plain")
    client.load_model("clf")
    np.testing.assert_array_equal(_infer(client, "plain", x), load(repo / "plain.onnx", device="cpu").run({"x": x})["logits"])
    np.testing.assert_array_equal(_infer(client, "clf", x),
                                  load(repo / "clf" / "11" / "model.onnx", device="cpu").run({"x": x})["logits"])
    with pytest.raises(InferenceServerException, match="no model 'nope' in the repository"):
        client.load_model("nope")
    with pytest.raises(InferenceServerException, match="model 'nope' is not loaded"):
        client.unload_model("nope")
    assert client.is_server_live()
    assert "model_repository" in client.get_server_metadata()["extensions"]


def test_repository_requests_are_checked(repo, start_server):
    from _http import post

    srv = start_server([repo])
    status, _, body = post(srv.url, "/v2/repository/index", b"[1, 2]")
    assert status == 400 and b"must be a JSON object" in body
    status, _, body = post(srv.url, "/v2/repository/index", b'{"ready": "yes"}')
    assert status == 400 and b"'ready' must be true or false" in body
    status, _, body = post(srv.url, "/v2/repository/index", b'{"ready": true}')
    assert status == 200


def test_run_folders_and_files_side_by_side_and_name_clashes(tmp_path):
    root = tmp_path / "repo"
    run = root / "pets"
    run.mkdir(parents=True)
    save_model(mlp(8, [4], 3, seed=1), run / "model.onnx")
    save_model(mlp(8, [4], 3, seed=1), run / "source.onnx")
    save_model(mlp(8, [4], 3, seed=2), root / "plain.onnx")
    found = scan([root])
    assert sorted(found) == ["pets", "plain"]
    assert found["pets"][0].run == run and found["pets"][0].path == run / "model.onnx"
    other = tmp_path / "other"
    other.mkdir()
    save_model(mlp(8, [4], 3, seed=3), other / "plain.onnx")
    with pytest.raises(ConfigError, match="two models would be named 'plain'"):
        scan([root, other])
