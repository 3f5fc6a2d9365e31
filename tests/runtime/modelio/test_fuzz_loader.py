"""Property-based fuzzing of the model loader (hypothesis, a bounded number of examples).

Properties: whatever the bytes of a model file or its external-data declarations, loading either
gives a model whose tensors hold no byte of the secret outside the folder, or raises ModelError
(UnsafeModelError included). Nothing else escapes, nothing hangs (each example has a deadline)."""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, numpy_helper

from _external_models import add_model, weight

from onnxforge.graphs import mlp
from onnxforge.runtime import ModelError, OnnxforgeError, load
from onnxforge.runtime.modelio.external_data import all_tensors
from onnxforge.runtime.modelio.files import load_model

pytestmark = pytest.mark.fuzz

SECRET = bytes(range(200, 216))  # float32[4]-sized, distinctive
DATA = b"HEAD" + np.arange(4, dtype=np.float32).tobytes()
# ONNXFORGE_FUZZ_SCALE=N runs N times the examples from a random seed (CI: 1, fixed seed)
SCALE = int(os.environ.get("ONNXFORGE_FUZZ_SCALE", "1"))
FUZZ = settings(max_examples=800 * SCALE, deadline=2000, derandomize=SCALE == 1, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz")
    (root / "secret.bin").write_bytes(SECRET)
    models = root / "models"
    models.mkdir()
    (models / "w.bin").write_bytes(DATA)
    (models / "sub").mkdir()
    (models / "sub" / "w.bin").write_bytes(DATA)
    os.symlink(root / "secret.bin", models / "link.bin")
    os.symlink(root, models / "up")
    return models


def _assert_no_secret(model) -> None:
    for where, tensor in all_tensors(model):
        assert tensor.data_location != TensorProto.EXTERNAL, where
        assert SECRET[:8] not in tensor.raw_data, where


LOCATIONS = st.one_of(
    st.sampled_from(["w.bin", "./w.bin", "sub/w.bin", "sub//w.bin", "../secret.bin", "up/secret.bin", "link.bin",
                     "/etc/passwd", "sub/../w.bin", "..", ".", "", "sub", "C:w.bin", "\\w.bin", "w.bin\x00",
                     "models/../../secret.bin", "%2e%2e/secret.bin", "w.bin/", "up/models/w.bin"]),
    st.text(alphabet=st.sampled_from(list("./\\wb.insecret_-:%0\x00")), max_size=24),
)
NUMBERS = st.one_of(st.integers(-2**70, 2**70).map(str), st.sampled_from(["", " 4", "4 ", "1e3", "0x10", "+4", "-0"]),
                    st.text(max_size=6))
KEYS = st.sampled_from(["location", "offset", "length", "checksum", "basepath", "LOCATION", ""])


@FUZZ
@given(location=LOCATIONS, offset=st.one_of(st.none(), NUMBERS), length=st.one_of(st.none(), NUMBERS),
       extra=st.lists(st.tuples(KEYS, st.text(max_size=12)), max_size=2))
def test_any_external_data_declaration_loads_safely_or_is_refused(folder, location, offset, length, extra):
    entries = [("location", location)]
    entries += [("offset", offset)] if offset is not None else []
    entries += [("length", length)] if length is not None else []
    path = folder / "fuzz.onnx"
    path.write_bytes(add_model(weight(entries + extra)).SerializeToString())
    try:
        model = load_model(path)
    except ModelError:
        return
    _assert_no_secret(model)
    w = numpy_helper.to_array(model.graph.initializer[0]).tobytes()
    assert w in DATA  # whatever loads is a slice of the model's own data file


@FUZZ
@given(st.data())
def test_mutated_model_files_load_safely_or_are_refused(folder, data):
    raw = bytearray(add_model(weight(location="w.bin", offset=4, length=16)).SerializeToString())
    edits = data.draw(st.lists(st.tuples(st.integers(0, len(raw) - 1), st.integers(0, 255),
                                         st.sampled_from(["set", "insert", "delete"])), min_size=1, max_size=6))
    for pos, byte, op in edits:
        pos = min(pos, len(raw) - 1)
        if op == "set":
            raw[pos] = byte
        elif op == "insert":
            raw.insert(pos, byte)
        elif len(raw) > 1:
            del raw[pos]
    cut = data.draw(st.one_of(st.none(), st.integers(0, len(raw))))
    path = folder / "mutated.onnx"
    path.write_bytes(bytes(raw[:cut]))
    try:
        model = load_model(path)
    except ModelError as exc:
        assert "mutated.onnx" in str(exc) or "'" in str(exc)
        return
    _assert_no_secret(model)


@FUZZ
@given(st.data())
def test_mutated_trained_models_open_as_sessions_or_fail_cleanly(tmp_path_factory, data):
    """Past the loader: ONNX Runtime builds a session from what loads, or we say why (no crash)."""
    raw = bytearray(mlp(4, [3], 2, seed=0).SerializeToString())
    for pos in data.draw(st.lists(st.integers(0, len(raw) - 1), min_size=1, max_size=4)):
        raw[pos] = data.draw(st.integers(0, 255))
    path = tmp_path_factory.mktemp("m") / "m.onnx"
    path.write_bytes(bytes(raw))
    try:
        session = load(path, device="cpu")
    except ModelError:
        return
    feeds = {i.name: np.zeros([d if isinstance(d, int) else 2 for d in i.shape], i.dtype) for i in session.inputs}
    try:
        session.run(feeds)
    except OnnxforgeError:
        pass
