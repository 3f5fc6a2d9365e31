"""Loader bombs (issue 16): recursive functions, functions that inline to billions of nodes, deep
If nesting, millions of nodes, small declarations of huge tensors, and an external-data escape
through a function's default attribute. Each is refused in one ModelError line naming the limit,
within a fraction of a second, before ONNX Runtime sees the model."""

from __future__ import annotations

import os
import time

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import _bomb_models as bombs
from _external_models import add_model, external

from onnxforge.runtime import ConfigError, ModelError, UnsafeModelError, load
from onnxforge.runtime.modelio.files import load_model
from onnxforge.runtime.modelio.limits import LoadLimits


def _refused(model, match, limits=None, seconds=1.0):
    start = time.perf_counter()
    with pytest.raises(ModelError, match=match) as info:
        load_model(model.SerializeToString(), limits=limits)
    assert time.perf_counter() - start < seconds
    assert "\n" not in str(info.value)
    return str(info.value)


@pytest.mark.parametrize("calls,cycle", [
    ({0: [0]}, "'bomb.f0' -> 'bomb.f0'"),
    ({0: [1], 1: [0]}, "'bomb.f0' -> 'bomb.f1' -> 'bomb.f0'"),
    ({0: [1], 1: [2, 2], 2: [3], 3: [1]}, "'bomb.f1' -> 'bomb.f2' -> 'bomb.f3' -> 'bomb.f1'"),
])
def test_a_function_that_calls_itself_is_refused(calls, cycle):
    assert cycle in _refused(bombs.call_graph(calls), "calls itself; a recursive function cannot be run")


def test_recursion_through_a_subgraph_is_seen_and_a_long_chain_needs_no_deep_stack():
    model = bombs.call_graph({0: [1], 1: []})
    body = model.functions[1]
    then = helper.make_graph([helper.make_node("f0", ["X"], ["t"], domain=bombs.DOMAIN)], "then", [],
                             [helper.make_tensor_value_info("t", TensorProto.FLOAT, None)])
    body.node.insert(0, helper.make_node("If", ["c"], ["unused"], then_branch=then, else_branch=then))
    _refused(model, "'bomb.f1' -> 'bomb.f0' -> 'bomb.f1'|'bomb.f0' -> 'bomb.f1' -> 'bomb.f0'")
    chain = bombs.call_graph({i: [i + 1] if i < 3000 else [] for i in range(3001)})
    assert len(load_model(chain.SerializeToString()).functions) == 3001


def test_functions_fanning_out_to_two_to_the_thirty_nodes_are_refused_quickly():
    model = bombs.fan_out(30)
    assert len(model.SerializeToString()) < 4000
    message = _refused(model, "its functions inline to 2147483647 nodes, over the limit max_inlined_nodes=200000")
    assert "ONNXFORGE_MAX_INLINED_NODES" in message
    # within the limit the same shape loads, and runs
    small = bombs.fan_out(4)
    session = load(small)
    np.testing.assert_array_equal(session.run({"x": np.arange(4, dtype=np.float32)})["y"], np.arange(4))
    _refused(small, "inline to 31 nodes", LoadLimits(max_inlined_nodes=30))


def test_deeply_nested_subgraphs_are_refused():
    _refused(bombs.nested_if(20), r"subgraphs nest 9 deep, over the limit max_depth=8")
    x = np.ones(4, np.float32)
    np.testing.assert_array_equal(load(bombs.nested_if(8)).run({"x": x})["y"], x)
    assert load_model(bombs.nested_if(12), limits=LoadLimits(max_depth=12)).graph.node[0].op_type == "If"


def _empty_nodes(count: int) -> bytes:
    """A model file whose graph holds ``count`` empty nodes (two bytes each), written directly."""
    model = bombs.identities(1)
    graph = model.graph.SerializeToString() + b"\x0a\x00" * count
    model.ClearField("graph")
    length, size = b"", len(graph)
    while True:
        low, size = size & 0x7F, size >> 7
        length += bytes([low | (0x80 if size else 0)])
        if not size:
            break
    return model.SerializeToString() + b"\x3a" + length + graph


def test_a_million_empty_nodes_are_refused_by_default():
    data = _empty_nodes(1_000_000)
    assert len(data) < 2_100_000
    with pytest.raises(ModelError, match="more than 200000 nodes, the limit max_nodes"):
        load_model(data)


def test_too_many_nodes_are_refused():
    _refused(bombs.identities(101), "more than 100 nodes, the limit max_nodes", LoadLimits(max_nodes=100))
    assert len(load_model(bombs.identities(100), limits=LoadLimits(max_nodes=100)).graph.node) == 100
    assert LoadLimits().max_nodes == 200_000


@pytest.mark.parametrize("model,where", [
    (bombs.sparse_initializer([1 << 20, 1 << 10]), "sparse initializer 's'"),       # 4 GiB from ~40 bytes
    (bombs.constant_of_shape([1 << 29]), "ConstantOfShape node 'fill'"),             # 2 GiB
    (bombs.constant_of_shape([1 << 28], np.float64), "ConstantOfShape node 'fill'"),  # the value's type counts
    (bombs.expand([1 << 10, 1], [1, 1 << 19]), "Expand node 'grow'"),                 # broadcast with the input
], ids=["sparse", "constant-of-shape", "constant-of-shape-f64", "expand"])
def test_small_declarations_of_huge_tensors_count_against_the_memory_cap(model, where):
    assert len(model.SerializeToString()) < 10_000
    _refused(model, f"{where} makes the tensors it declares add up to more than 1024 MiB")
    assert load_model(model, limits=LoadLimits(max_materialized_mb=4096)).graph == model.graph


def test_declared_sizes_add_up_and_small_ones_run():
    model = bombs.expand([1, 1024], [1024, 1])  # 4 MiB: the input broadcast with the shape
    _refused(model, "more than 3 MiB", LoadLimits(max_materialized_mb=3))
    assert load(model).run({"x": np.ones(4, np.float32)})["y"].shape == (4,)


def test_limits_are_settable_from_the_environment(monkeypatch):
    monkeypatch.setenv("ONNXFORGE_MAX_DEPTH", "25")
    assert load_model(bombs.nested_if(20).SerializeToString()).graph.node[0].op_type == "If"
    monkeypatch.setenv("ONNXFORGE_MAX_DEPTH", "lots")
    with pytest.raises(ConfigError, match="ONNXFORGE_MAX_DEPTH must be a whole number >= 0; got 'lots'"):
        load_model(bombs.nested_if(1))
    with pytest.raises(ConfigError, match="max_nodes must be a whole number"):
        LoadLimits(max_nodes=-1)


def _function_with_default(tensor) -> onnx.ModelProto:
    model = add_model(nodes=[helper.make_node("AddW", ["x"], ["y"], domain="evil")])
    body = [helper.make_node("Constant", [], ["w"], value_float=0.0),
            helper.make_node("Add", ["X", "w"], ["Y"])]
    default = helper.make_attribute("w", tensor)
    f = helper.make_function("evil", "AddW", ["X"], ["Y"], body, [helper.make_opsetid("", 17)],
                             attribute_protos=[default])
    model.functions.append(f)
    model.opset_import.append(helper.make_opsetid("evil", 1))
    return model


@pytest.mark.parametrize("location,message", [("../secret.bin", "'..' segment"), ("/etc/passwd", "absolute path")])
def test_an_external_tensor_in_a_function_default_attribute_is_checked(tmp_path, location, message):
    (tmp_path / "secret.bin").write_bytes(bytes(16))
    folder = tmp_path / "m"
    folder.mkdir()
    tensor = external(TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[4]), location=location,
                      offset=0, length=16)
    path = folder / "evil.onnx"
    path.write_bytes(_function_with_default(tensor).SerializeToString())
    with pytest.raises(UnsafeModelError, match=f"default attribute 'w' of function 'evil.AddW'.*{message}"):
        load(path, optimization="disable")
    inside = numpy_helper.from_array(np.arange(4, dtype=np.float32), "w")
    assert load_model(_function_with_default(inside)).functions[0].attribute_proto[0].t.dims == [4]


@pytest.mark.parametrize("command", [["inspect", "{m}"], ["infer", "{m}", "--input", "{x}"]])
def test_commands_refuse_a_bomb_in_one_line(cli_run, tmp_path, command):
    path = tmp_path / "bomb.onnx"
    path.write_bytes(bombs.call_graph({0: [1], 1: [0]}).SerializeToString())
    np.save(tmp_path / "x.npy", np.ones((1, 4), np.float32))
    result = cli_run(*(p.format(m=path, x=tmp_path / "x.npy") for p in command))
    assert result.exit_code == 1, result.output
    assert "calls itself" in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert os.path.exists(path)
