"""onnxforge writes only into a folder it created, an empty one, or one holding its run marker:
a user's project folder given as --out is refused in one line naming --overwrite, and even with
--overwrite no file or tree onnxforge did not write is replaced or removed."""

from __future__ import annotations

import json
import os

import numpy as np
import onnx
import pytest

from onnxforge.graphs import mlp
from onnxforge.runtime import CheckpointError, Trainer
from onnxforge.runtime.training.run_folder import MARKER


def _trainer(path):
    return Trainer(mlp(64, [16], 10, seed=1), path, device="cpu", seed=7, progress=False, threads=1)


@pytest.fixture()
def data(digits):
    (x, y), _ = digits
    return x[:32], y[:32]


def _project(folder):
    """A user's project folder: their own artifacts/ tree, model and metrics."""
    (folder / "artifacts" / "plots").mkdir(parents=True)
    (folder / "artifacts" / "plots" / "loss.png").write_bytes(b"\x89PNG mine")
    (folder / "model.onnx").write_bytes(b"my model")
    (folder / "metrics.json").write_text('{"mine": true}')
    (folder / "notes.txt").write_text("my notes")
    return _snapshot(folder)


def _snapshot(folder):
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_project_folder_is_refused_in_one_line_naming_overwrite_and_left_untouched(tmp_path, data):
    before = _project(tmp_path)
    with pytest.raises(CheckpointError, match=r"^--out '.*' is not a run folder onnxforge wrote \(it holds artifacts, "
                                              r"metrics.json, model.onnx, notes.txt\); .*--overwrite") as err:
        _trainer(tmp_path).fit(data, epochs=1)
    assert "\n" not in str(err.value)
    assert _snapshot(tmp_path) == before and not (tmp_path / ".lock").exists()


def test_overwrite_never_replaces_a_users_files_or_tree(tmp_path, data):
    before = _project(tmp_path)
    with pytest.raises(CheckpointError, match=r"its model.onnx, metrics.json, artifacts would be replaced; "
                                              r"--overwrite never replaces files onnxforge did not write"):
        _trainer(tmp_path).fit(data, epochs=1, overwrite=True)
    assert _snapshot(tmp_path) == before


def test_overwrite_writes_the_run_beside_files_of_other_names(tmp_path, data):
    (tmp_path / "notes.txt").write_text("keep")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "x.npz").write_bytes(b"keep too")
    with pytest.raises(CheckpointError, match="--overwrite"):
        _trainer(tmp_path).fit(data, epochs=1)
    _trainer(tmp_path).fit(data, epochs=1, overwrite=True)
    assert (tmp_path / "notes.txt").read_text() == "keep" and (tmp_path / "data" / "x.npz").read_bytes() == b"keep too"
    assert (tmp_path / MARKER).is_file() and (tmp_path / "checkpoint").is_file()
    _trainer(tmp_path).fit(data, epochs=1, overwrite=True)  # now a marked run: starting again is allowed
    assert (tmp_path / "notes.txt").read_text() == "keep"


def test_new_and_empty_folders_are_taken_and_marked(tmp_path, data):
    _trainer(tmp_path / "new").fit(data, epochs=1)
    empty = tmp_path / "empty"
    empty.mkdir()
    _trainer(empty).fit(data, epochs=1)
    for run in (tmp_path / "new", empty):
        assert (run / MARKER).is_file()
        assert json.loads((run / "metrics.json").read_text())["history"][0]["epoch"] == 1


def test_a_run_from_before_the_marker_is_still_resumed(tmp_path, data):
    run = tmp_path / "run"
    _trainer(run).fit(data, epochs=1)
    os.remove(run / MARKER)
    _trainer(run).fit(data, epochs=2, resume=True)
    assert len(json.loads((run / "metrics.json").read_text())["history"]) == 2 and (run / MARKER).is_file()


def test_a_planted_marker_link_does_not_make_a_folder_onnxforges(tmp_path, data):
    before = _project(tmp_path)
    elsewhere = tmp_path.parent / f"{tmp_path.name}-marker"
    elsewhere.write_text("x")
    os.symlink(elsewhere, tmp_path / MARKER)
    with pytest.raises(CheckpointError, match="is not a run folder onnxforge wrote"):
        _trainer(tmp_path).fit(data, epochs=1, overwrite=True)
    assert {k: v for k, v in _snapshot(tmp_path).items() if k != MARKER} == before


def test_the_cli_refuses_a_project_folder_in_one_line(cli_run, tmp_path, digits):
    (x, y), _ = digits
    np.savez(tmp_path / "d.npz", x=x[:32], y=y[:32])
    onnx.save(mlp(64, [16], 10, seed=2), str(tmp_path / "m.onnx"))
    project = tmp_path / "project"
    project.mkdir()
    before = _project(project)
    result = cli_run("train", str(tmp_path / "m.onnx"), "--data", str(tmp_path / "d.npz"), "--out", str(project),
                     "--epochs", "1", "--quiet", "--threads", "1")
    assert result.exit_code != 0
    assert "--overwrite" in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1, result.output
    assert _snapshot(project) == before
