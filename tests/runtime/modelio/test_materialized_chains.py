"""The materialised-tensor limit follows sizes computed from constants: through Identity,
Reshape, Cast, Concat, Shape, arithmetic and subgraphs, into ConstantOfShape, Expand, Tile and
Range. Each recipe is a few hundred bytes that would allocate gigabytes; each is refused in one
line before ONNX Runtime sees it. The sizes it computes are checked against what onnx's
reference evaluator actually makes, on small versions of the same chains (and fuzzed)."""

from __future__ import annotations

import os

import numpy as np
import onnx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

from onnxforge.runtime.errors import ModelError
from onnxforge.runtime.modelio.files import load_model
from onnxforge.runtime.modelio.sizes import Known

# ONNXFORGE_FUZZ_SCALE=N runs N times the examples from a random seed (CI: 1, fixed seed)
SCALE = int(os.environ.get("ONNXFORGE_FUZZ_SCALE", "1"))


def const(name: str, values, dtype=np.int64):
    return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(np.array(values, dtype)))


def model(nodes, out="big", out_type=TensorProto.FLOAT, inits=()):
    graph = helper.make_graph(nodes, "g", [], [helper.make_tensor_value_info(out, out_type, None)], list(inits))
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


def fill(shape_name="shape", out="big"):
    return helper.make_node("ConstantOfShape", [shape_name], [out], name="fill",
                            value=numpy_helper.from_array(np.zeros(1, np.float32)))


GIB = 1 << 30
RECIPES = {
    "identity-chain": (model([const("s0", [1 << 29]), helper.make_node("Identity", ["s0"], ["s1"]),
                              helper.make_node("Identity", ["s1"], ["shape"]), fill()]), "ConstantOfShape node 'fill'"),
    "reshape-of-the-shape": (model([const("s0", [[1 << 15, 1 << 15]]), const("flat", [-1]),
                                    helper.make_node("Reshape", ["s0", "flat"], ["shape"]), fill()]), "ConstantOfShape"),
    "cast-int32-shape": (model([const("s0", [1 << 29], np.int32),
                                helper.make_node("Cast", ["s0"], ["shape"], to=TensorProto.INT64), fill()]),
                         "ConstantOfShape"),
    "concat-and-multiply": (model([const("a", [1 << 14]), const("b", [1 << 2]), const("k", [1 << 8]),
                                   helper.make_node("Mul", ["a", "k"], ["ak"]),
                                   helper.make_node("Concat", ["ak", "b", "ak"], ["target"], axis=0),
                                   const("one", [1.0], np.float32),
                                   helper.make_node("Expand", ["one", "target"], ["big"], name="grow")]),
                            "Expand node 'grow'"),
    "range-to-a-constant-limit": (model([const("a", 0), const("b", 1 << 30), const("d", 1),
                                         helper.make_node("Range", ["a", "b", "d"], ["big"], name="count")],
                                        out_type=TensorProto.INT64), "Range node 'count'"),
    "tile-by-constant-repeats": (model([const("r", [1 << 20]), helper.make_node("Tile", ["row", "r"], ["big"], name="rep")],
                                       inits=[numpy_helper.from_array(np.ones(1024, np.float32), "row")]),
                                 "Tile node 'rep'"),
    "shape-of-a-made-tensor": (model([const("s0", [1 << 10]), fill("s0", "small"),
                                      helper.make_node("Shape", ["small"], ["n"]), const("k", [1 << 20]),
                                      helper.make_node("Mul", ["n", "k"], ["shape"]), fill()]), "ConstantOfShape"),
    "range-of-floats": (model([const("a", 0.0, np.float32), const("b", 2.0**30, np.float32),
                               const("d", 1.0, np.float32), helper.make_node("Range", ["a", "b", "d"], ["big"], name="count")]),
                        "Range node 'count'"),
    "range-feeding-tile": (model([const("a", 0), const("b", 1 << 12), const("d", 1),
                                  helper.make_node("Range", ["a", "b", "d"], ["row"]),
                                  const("r", [1 << 18]), helper.make_node("Tile", ["row", "r"], ["big"], name="rep")],
                                 out_type=TensorProto.INT64), "Tile node 'rep'"),
}


@pytest.mark.parametrize("name", RECIPES)
def test_sizes_computed_from_constants_are_refused_in_one_line(name):
    recipe, where = RECIPES[name]
    with pytest.raises(ModelError, match=rf"{where}.* more than 1024 MiB, the limit max_materialized_mb") as caught:
        load_model(recipe.SerializeToString())
    assert "\n" not in str(caught.value)


def test_a_subgraph_sees_the_outer_graphs_constants():
    branch = helper.make_graph([fill()], "then", [], [helper.make_tensor_value_info("big", TensorProto.FLOAT, None)])
    other = helper.make_graph([helper.make_node("Identity", ["zero"], ["small"])], "else", [],
                              [helper.make_tensor_value_info("small", TensorProto.FLOAT, None)])
    nodes = [const("shape", [1 << 29]), const("cond", True, np.bool_), const("zero", [0.0], np.float32),
             helper.make_node("If", ["cond"], ["out"], then_branch=branch, else_branch=other)]
    with pytest.raises(ModelError, match="ConstantOfShape node 'fill'"):
        load_model(model(nodes, out="out").SerializeToString())


def _declared(m: onnx.ModelProto) -> dict[str, int]:
    known, sizes = Known(), {}
    for t in m.graph.initializer:
        known.constant(t.name, t)
    for node in m.graph.node:
        size = known.node(node)
        if size is not None:
            sizes[node.output[0]] = size
    return sizes


def _check_against_reference(m: onnx.ModelProto) -> None:
    outputs = [o.name for o in m.graph.output]
    got = dict(zip(outputs, ReferenceEvaluator(m).run(None, {}), strict=True))
    declared = _declared(m)
    for name, size in declared.items():
        if name in got:
            assert size == np.asarray(got[name]).nbytes, (name, size, got[name].shape)
    assert set(outputs) <= set(declared)


def test_small_chains_declare_what_the_reference_makes():
    m = model([const("a", 3), const("b", 40), const("d", 7), helper.make_node("Range", ["a", "b", "d"], ["rng"]),
               const("r", [3]), helper.make_node("Tile", ["rng", "r"], ["tiled"]),
               helper.make_node("Shape", ["tiled"], ["n"]), const("two", [2]), helper.make_node("Mul", ["n", "two"], ["m"]),
               helper.make_node("ConstantOfShape", ["m"], ["filled"]), const("s", [[2, 1]]), const("flat", [-1]),
               helper.make_node("Reshape", ["s", "flat"], ["t"]),
               helper.make_node("Expand", ["rng", "t"], ["grown"])])
    del m.graph.output[:]
    m.graph.output.extend([helper.make_tensor_value_info(n, TensorProto.UNDEFINED, None)
                           for n in ("rng", "tiled", "filled", "grown")])
    _check_against_reference(m)


@pytest.mark.fuzz
@settings(max_examples=80 * SCALE, deadline=None, derandomize=SCALE == 1, database=None)
@given(start=st.integers(-50, 50), limit=st.integers(-50, 50), delta=st.integers(-9, 9).filter(bool),
       repeats=st.integers(0, 5), rows=st.integers(0, 4), dtype=st.sampled_from([np.int64, np.int32, np.float32]),
       scale=st.sampled_from([1.0, 0.5, 0.3]))
def test_fuzz_declared_sizes_equal_the_reference(start, limit, delta, repeats, rows, dtype, scale):
    if dtype is np.float32:  # fractional bounds and steps: the count is a ceiling
        start, limit, delta = start * scale, limit * scale, delta * scale
    nodes = [const("a", start, dtype), const("b", limit, dtype), const("d", delta, dtype),
             helper.make_node("Range", ["a", "b", "d"], ["rng"]), const("r", [repeats]),
             helper.make_node("Tile", ["rng", "r"], ["tiled"]), const("t", [rows, 1]),
             helper.make_node("Expand", ["rng", "t"], ["grown"])]
    m = model(nodes)
    del m.graph.output[:]
    m.graph.output.extend([helper.make_tensor_value_info(n, TensorProto.UNDEFINED, None) for n in ("rng", "tiled", "grown")])
    _check_against_reference(m)
