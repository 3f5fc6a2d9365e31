"""Model files written by strangers: every way external data can escape the model's folder or lie
about its size, corrupt and truncated files, and the same escapes refused when saving."""

from __future__ import annotations

import os

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from _external_models import add_model, external, weight

from onnxforge.graphs import mlp
from onnxforge.runtime import ModelError, UnsafeModelError, load
from onnxforge.runtime.modelio.files import load_model, save_model

WEIGHT = np.arange(4, dtype=np.float32)
SECRET = b"TOP-SECRET-BYTES"  # 16 bytes: exactly what a float32[4] tensor needs


@pytest.fixture
def folder(tmp_path):
    """A model folder with a good data file, next to a secret outside it."""
    (tmp_path / "secret.bin").write_bytes(SECRET)
    models = tmp_path / "models"
    models.mkdir()
    (models / "w.bin").write_bytes(b"HEAD" + WEIGHT.tobytes())
    return models


def _write(folder, model, name="evil.onnx"):
    path = folder / name
    path.write_bytes(model.SerializeToString())
    return path


def test_good_external_data_loads_and_runs(folder):
    path = _write(folder, add_model(weight(location="w.bin", offset=4, length=16)))
    model = load_model(path)
    w = numpy_helper.to_array(model.graph.initializer[0])
    np.testing.assert_array_equal(w, WEIGHT)
    out = load(path, device="cpu").run({"x": np.ones(4, np.float32)})
    np.testing.assert_array_equal(out["y"], WEIGHT + 1)


def test_length_may_be_omitted_when_the_rest_of_the_file_is_the_tensor(folder):
    model = load_model(_write(folder, add_model(weight(location="w.bin", offset=4))))
    np.testing.assert_array_equal(numpy_helper.to_array(model.graph.initializer[0]), WEIGHT)


ESCAPES = [
    ({"location": "../secret.bin"}, UnsafeModelError, "'..' segment"),
    ({"location": "sub/../../secret.bin"}, UnsafeModelError, "'..' segment"),
    ({"location": "..\\secret.bin"}, UnsafeModelError, "'..' segment"),
    ({"location": "C:\\secret.bin"}, UnsafeModelError, "absolute path"),
    ({"location": "\\\\server\\share\\secret.bin"}, UnsafeModelError, "absolute path"),
    ({"location": "w.bin\x00.txt"}, UnsafeModelError, "NUL byte"),
    ({"location": "w.bin", "offset": "4", "owner": "root"}, UnsafeModelError, "unknown external data key 'owner'"),
    ({"location": "w.bin", "basepath": "/"}, UnsafeModelError, "unknown external data key 'basepath'"),
    ({"offset": "0"}, ModelError, "no 'location' names the file"),
    ({"location": "w.bin", "offset": "-4"}, ModelError, "'offset' is '-4', negative"),
    ({"location": "w.bin", "offset": "4", "length": "-16"}, ModelError, "'length' is '-16', negative"),
    ({"location": "w.bin", "offset": "0x4"}, ModelError, "'offset' is '0x4', not a whole number"),
    ({"location": "w.bin", "offset": "99999999999999999999999"}, ModelError, "not a whole number"),
    ({"location": "w.bin", "offset": "\x1c4"}, ModelError, "not a whole number"),  # found by deeper fuzzing
    ({"location": "w.bin", "offset": " 4"}, ModelError, "not a whole number"),
    ({"location": "w.bin", "offset": "21"}, ModelError, "offset 21 is past the end of 'w.bin' (20 bytes)"),
    ({"location": "w.bin", "offset": "8", "length": "16"}, ModelError, "offset 8 + length 16 runs past the end"),
    ({"location": "w.bin", "offset": "0", "length": "8"}, ModelError, "length is 8 bytes, but a FLOAT tensor of shape [4] needs 16"),
    ({"location": "w.bin", "offset": "0"}, ModelError, "length is 20 bytes, but a FLOAT tensor of shape [4] needs 16"),
    ({"location": "missing.bin"}, ModelError, "'missing.bin' does not exist"),
    ({"location": "."}, ModelError, "names no file"),
]


@pytest.mark.parametrize("entries,error,message", ESCAPES, ids=[str(i) for i in range(len(ESCAPES))])
def test_hostile_external_data_declarations_are_refused(folder, entries, error, message):
    path = _write(folder, add_model(weight(**entries)))
    with pytest.raises(error) as info:
        load(path, device="cpu")
    assert message in str(info.value)
    assert "initializer 'w'" in str(info.value)


def test_absolute_path_is_refused_and_the_file_not_read(folder):
    secret = folder.parent / "secret.bin"
    with pytest.raises(UnsafeModelError, match="is an absolute path"):
        load_model(_write(folder, add_model(weight(location=str(secret), offset=0, length=16))))


def test_a_key_given_twice_is_refused(folder):
    with pytest.raises(UnsafeModelError, match="key 'location' is given twice"):
        load_model(_write(folder, add_model(weight(location="w.bin") and external(
            weight(location="w.bin"), location="../secret.bin"))))


def test_symbolic_link_to_a_file_outside_is_refused(folder):
    os.symlink(folder.parent / "secret.bin", folder / "link.bin")
    with pytest.raises(UnsafeModelError, match="symbolic link \\('link.bin'\\)"):
        load_model(_write(folder, add_model(weight(location="link.bin", offset=0, length=16))))


def test_symbolic_link_inside_the_folder_is_refused_too(folder):
    os.symlink(folder / "w.bin", folder / "alias.bin")
    with pytest.raises(UnsafeModelError, match="symbolic link"):
        load_model(_write(folder, add_model(weight(location="alias.bin", offset=4, length=16))))


def test_symbolic_link_to_a_folder_is_refused(folder):
    os.symlink(folder.parent, folder / "up")
    with pytest.raises(UnsafeModelError, match="symbolic link \\('up'\\)"):
        load_model(_write(folder, add_model(weight(location="up/secret.bin", offset=0, length=16))))


def test_hard_linked_data_file_is_refused(folder):
    os.link(folder.parent / "secret.bin", folder / "hard.bin")
    with pytest.raises(UnsafeModelError, match="has 2 hard links"):
        load_model(_write(folder, add_model(weight(location="hard.bin", offset=0, length=16))))


def test_a_fifo_is_refused_without_blocking(folder):
    os.mkfifo(folder / "pipe.bin")
    with pytest.raises(UnsafeModelError, match="'pipe.bin' is not a regular file"):
        load_model(_write(folder, add_model(weight(location="pipe.bin", offset=0, length=16))))


def test_a_folder_as_location_is_refused(folder):
    (folder / "sub").mkdir()
    with pytest.raises(UnsafeModelError, match="'sub' is not a regular file"):
        load_model(_write(folder, add_model(weight(location="sub", offset=0, length=16))))


def test_external_tensor_in_a_constant_attribute_is_checked(folder):
    value = external(TensorProto(name="c", data_type=TensorProto.FLOAT, dims=[4]), location="../secret.bin")
    nodes = [helper.make_node("Constant", [], ["w"], name="c0", value=value), helper.make_node("Add", ["x", "w"], ["y"])]
    with pytest.raises(UnsafeModelError, match="attribute 'value' of node 'c0' \\(Constant\\)"):
        load_model(_write(folder, add_model(nodes=nodes)))


def test_external_tensor_inside_a_subgraph_is_checked(folder):
    inner = helper.make_graph([helper.make_node("Add", ["x", "w2"], ["z"])], "then", [],
                              [helper.make_tensor_value_info("z", TensorProto.FLOAT, [4])],
                              [external(TensorProto(name="w2", data_type=TensorProto.FLOAT, dims=[4]),
                                         location="/etc/passwd")])
    cond = numpy_helper.from_array(np.array(True), "cond")
    nodes = [helper.make_node("Constant", [], ["c"], value=cond),
             helper.make_node("If", ["c"], ["y"], name="branch", then_branch=inner, else_branch=inner)]
    with pytest.raises(UnsafeModelError, match="_branch' of node 'branch' \\(If\\) > initializer 'w2'"):
        load_model(_write(folder, add_model(nodes=nodes)))


def test_external_sparse_initializer_is_checked(folder):
    values = external(TensorProto(name="sw", data_type=TensorProto.FLOAT, dims=[1]), location="../secret.bin")
    indices = numpy_helper.from_array(np.array([0], np.int64), "sw_idx")
    sparse = helper.make_sparse_tensor(values, indices, [4])
    with pytest.raises(UnsafeModelError, match="sparse initializer 'sw' \\(values\\)"):
        load_model(_write(folder, add_model(weight(location="w.bin", offset=4), sparse=[sparse])))


def test_external_tensor_in_a_model_function_is_checked(folder):
    value = external(TensorProto(name="k", data_type=TensorProto.FLOAT, dims=[4]), location="../secret.bin")
    fn = helper.make_function("custom", "AddK", ["a"], ["b"],
                              [helper.make_node("Constant", [], ["k"], value=value), helper.make_node("Add", ["a", "k"], ["b"])],
                              [helper.make_opsetid("", 17)])
    model = add_model(nodes=[helper.make_node("AddK", ["x"], ["y"], domain="custom")])
    model.functions.append(fn)
    model.opset_import.append(helper.make_opsetid("custom", 1))
    with pytest.raises(UnsafeModelError, match="function 'custom.AddK' > attribute 'value'"):
        load_model(_write(folder, model))


def test_external_entries_on_a_tensor_not_marked_external_are_refused(folder):
    w = numpy_helper.from_array(WEIGHT, "w")
    e = w.external_data.add()
    e.key, e.value = "location", "../secret.bin"
    with pytest.raises(UnsafeModelError, match="not marked external"):
        load_model(_write(folder, add_model(w)))


def test_external_string_tensor_is_refused(folder):
    w = external(TensorProto(name="w", data_type=TensorProto.STRING, dims=[1]), location="w.bin")
    with pytest.raises(ModelError, match="tensor of strings cannot keep its data in an external file"):
        load_model(_write(folder, add_model(w)))


def test_total_external_bytes_are_capped(folder):
    with pytest.raises(UnsafeModelError, match="adds up to more than 8 bytes"):
        load_model(_write(folder, add_model(weight(location="w.bin", offset=4))), max_external_bytes=8)


def test_model_file_over_the_size_cap_is_refused_before_reading(folder):
    path = _write(folder, add_model(weight(location="w.bin", offset=4)))
    with pytest.raises(ModelError, match="over the model size limit of 10"):
        load_model(path, max_bytes=10)


def test_model_file_that_is_a_fifo_is_refused(folder):
    os.mkfifo(folder / "model.onnx")
    with pytest.raises(ModelError, match="is not a regular file"):
        load_model(folder / "model.onnx")


def test_model_given_as_bytes_or_proto_cannot_point_to_files(folder):
    model = add_model(weight(location="w.bin", offset=4))
    with pytest.raises(UnsafeModelError, match="it was not loaded from a path"):
        load_model(model.SerializeToString())
    with pytest.raises(UnsafeModelError, match="it was not loaded from a path"):
        load(model, device="cpu")


def test_raw_data_that_does_not_fit_the_shape_is_refused(folder):
    w = numpy_helper.from_array(WEIGHT, "w")
    w.raw_data = w.raw_data[:12]
    with pytest.raises(ModelError, match="holds 12 bytes, but its type and shape \\[4\\] need 16"):
        load_model(_write(folder, add_model(w)))


def test_every_truncation_of_a_model_is_a_model_error_naming_the_file(tmp_path):
    """A protobuf cut between two top-level fields still parses; the only such cuts that load are
    past the whole graph and its opsets (trailing metadata lost): no cut graph is ever run."""
    original = mlp(4, [3], 2, seed=0)
    data = original.SerializeToString()
    path = tmp_path / "cut.onnx"
    refused = 0
    for end in range(0, len(data) - 1):
        path.write_bytes(data[:end])
        try:
            model = load(path, device="cpu").model
        except ModelError as exc:
            assert str(path) in str(exc), end
            refused += 1
            continue
        assert model.graph == original.graph and model.opset_import == original.opset_import, end
        assert len(model.metadata_props) < len(original.metadata_props)
    assert refused > 0.9 * len(data)


def test_garbage_and_flipped_bytes_give_model_errors(tmp_path):
    data = bytearray(mlp(4, [3], 2, seed=0).SerializeToString())
    rng = np.random.default_rng(0)
    path = tmp_path / "bad.onnx"
    outcomes = {"loaded": 0, "refused": 0}
    for _ in range(60):
        corrupt = bytearray(data)
        for pos in rng.integers(0, len(data), size=3):
            corrupt[pos] = int(rng.integers(0, 256))
        path.write_bytes(bytes(corrupt))
        try:
            load(path, device="cpu")
            outcomes["loaded"] += 1
        except ModelError as exc:
            assert str(path) in str(exc) or "ONNX Runtime cannot load" in str(exc)
            outcomes["refused"] += 1
    assert outcomes["refused"] > 0
    path.write_bytes(os.urandom(4096))
    with pytest.raises(ModelError, match="bad.onnx"):
        load_model(path)


def test_cli_reports_an_escape_in_one_line(cli_run, folder):
    path = _write(folder, add_model(weight(location="../secret.bin", offset=0, length=16)))
    result = cli_run("inspect", str(path))
    assert result.exit_code == 1
    assert result.output.count("\n") == 1 and result.output.startswith("Error: initializer 'w': ")
    assert "Traceback" not in result.output and SECRET.decode() not in result.output


# -- saving -------------------------------------------------------------------------------------

def test_save_with_external_data_round_trips(tmp_path):
    model = mlp(16, [32], 4, seed=1)
    path = save_model(model, tmp_path / "m.onnx", external_data=True, size_threshold=64)
    assert (tmp_path / "m.onnx.data").is_file()
    stored = onnx.load(str(path), load_external_data=False)
    assert any(t.data_location == TensorProto.EXTERNAL for t in stored.graph.initializer)
    loaded = load_model(path)
    for a, b in zip(model.graph.initializer, loaded.graph.initializer):
        np.testing.assert_array_equal(numpy_helper.to_array(a), numpy_helper.to_array(b))
    # the file is standard: onnx's own loader reads it too
    plain = onnx.load(str(path))
    np.testing.assert_array_equal(numpy_helper.to_array(plain.graph.initializer[0]),
                                  numpy_helper.to_array(model.graph.initializer[0]))


@pytest.mark.parametrize("location,message", [
    ("../out.data", "'..' segment"),
    ("/tmp/out.data", "absolute path"),
    ("sub/../../out.data", "'..' segment"),
    ("link/out.data", "symbolic link"),
])
def test_save_refuses_the_same_escapes(tmp_path, location, message):
    folder = tmp_path / "m"
    folder.mkdir()
    os.symlink(tmp_path, folder / "link")
    with pytest.raises(UnsafeModelError, match=message):
        save_model(mlp(4, [3], 2), folder / "m.onnx", external_data=location, size_threshold=0)
    assert not (folder / "m.onnx").exists() and not (tmp_path / "out.data").exists()


def test_save_refuses_a_model_still_pointing_to_unloaded_data(folder):
    model = add_model(weight(location="../secret.bin"))
    with pytest.raises(UnsafeModelError, match="still points to external data '../secret.bin'"):
        save_model(model, folder / "copy.onnx")


@pytest.mark.parametrize("command", [
    ["inspect", "{m}"],
    ["infer", "{m}", "--input", "{x}"],
    ["eval", "{m}", "--data", "{d}"],
    ["train", "{m}", "--data", "{d}", "--out", "{run}"],
    ["serve", "{m}", "--port", "0"],
    ["convert", "{m}", "-o", "{out}"],
    ["weights", "export", "{m}", "-o", "{w}"],
], ids=lambda c: c[0] if c[0] != "weights" else "weights-export")
def test_every_command_opens_models_through_the_safe_loader(cli_run, folder, command):
    model = _write(folder, add_model(weight(location="../secret.bin", offset=0, length=16)))
    np.save(folder / "x.npy", np.ones((2, 4), np.float32))
    np.savez(folder / "d.npz", x=np.ones((2, 4), np.float32), y=np.ones((2, 4), np.float32))
    paths = {"m": model, "x": folder / "x.npy", "d": folder / "d.npz", "run": folder / "run",
             "out": folder / "out.onnx", "w": folder / "w.npz"}
    result = cli_run(*(part.format(**paths) for part in command))
    assert result.exit_code == 1, result.output
    assert "'..' segment, which leaves the model's folder" in result.output
    assert not (folder / "run").exists() and not (folder / "out.onnx").exists() and not (folder / "w.npz").exists()


def test_save_with_external_data_handles_typed_fields(tmp_path):
    w = helper.make_tensor("w", TensorProto.FLOAT, [4], WEIGHT.tolist())  # float_data, not raw_data
    path = save_model(add_model(w), tmp_path / "typed.onnx", external_data="weights/typed.bin", size_threshold=1)
    assert (tmp_path / "weights" / "typed.bin").stat().st_size == 16
    np.testing.assert_array_equal(numpy_helper.to_array(load_model(path).graph.initializer[0]), WEIGHT)
