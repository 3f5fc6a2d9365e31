from __future__ import annotations

import numpy as np
import onnx
import pytest

from _external_models import add_model, weight

from onnxforge.graphs import mlp
from onnxforge.runtime import ModelError, UnsafeModelError, load
from onnxforge.runtime.modelio.files import load_model
from onnxforge.runtime.passes.compat import make_runtime_compatible


def test_missing_and_garbage_files(tmp_path):
    with pytest.raises(ModelError, match="does not exist"):
        load_model(tmp_path / "nope.onnx")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x00\x01 not a model")
    with pytest.raises(ModelError, match="is not a readable ONNX model"):
        load_model(bad)
    with pytest.raises(ModelError, match="holds no model.onnx"):
        load_model(tmp_path)


def test_external_data_outside_the_folder_is_refused(tmp_path):
    secret = tmp_path / "secret.bin"
    secret.write_bytes(np.arange(4, dtype=np.float32).tobytes())
    folder = tmp_path / "models"
    folder.mkdir()
    model = add_model(weight(location="../secret.bin", offset=0, length=16))
    path = folder / "evil.onnx"
    path.write_bytes(model.SerializeToString())
    with pytest.raises(UnsafeModelError, match="'..' segment, which leaves the model's folder"):
        load(path, device="cpu")


def test_ir_and_opset_are_lowered_to_what_the_runtime_accepts():
    model = mlp(4, [3], 2)
    model.ir_version = 14
    fixed = make_runtime_compatible(model, max_ir=10, max_opset=21)
    assert fixed.ir_version == 10 and model.ir_version == 14
    newer = onnx.version_converter.convert_version(mlp(4, [3], 2), 22)
    down = make_runtime_compatible(newer, max_ir=10, max_opset=21)
    assert [o.version for o in down.opset_import if o.domain == ""] == [21]


def test_a_model_given_as_a_proto_is_returned_as_a_copy():
    model = mlp(4, [3], 2)
    before = model.SerializeToString()
    loaded = load_model(model)
    assert loaded is not model and loaded.SerializeToString() == before
    loaded.graph.initializer[0].float_data.append(1.0)  # what a caller may then do to its result
    assert model.SerializeToString() == before
