"""Small models that ask a lot of whoever runs them (the loader-limit tests and their fuzz test):
function call graphs, nested If subgraphs, tensors a short declaration makes large."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

DOMAIN = "bomb"


def _model(nodes, functions=(), inits=(), sparse=(), out_shape=(4,)) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(out_shape))],
                              list(inits), sparse_initializer=list(sparse))
    opsets = [helper.make_opsetid("", 17)] + ([helper.make_opsetid(DOMAIN, 1)] if functions else [])
    model = helper.make_model(graph, opset_imports=opsets, functions=list(functions))
    model.ir_version = 8
    return model


def call_graph(calls: dict[int, list[int]], entry: int = 0) -> onnx.ModelProto:
    """Functions ``f0 .. fN`` where ``fI`` calls the functions ``calls[I]`` one after the other
    (``X -> ... -> Y``; one ``Identity`` when it calls none); the main graph calls ``f{entry}``."""
    functions = []
    for i in sorted(calls):
        callees = calls[i]
        names = ["X"] + [f"t{k}" for k in range(len(callees))]
        nodes = [helper.make_node(f"f{c}", [names[k]], [names[k + 1]], domain=DOMAIN) for k, c in enumerate(callees)]
        nodes.append(helper.make_node("Identity", [names[-1]], ["Y"]))
        functions.append(helper.make_function(DOMAIN, f"f{i}", ["X"], ["Y"], nodes,
                                              [helper.make_opsetid("", 17), helper.make_opsetid(DOMAIN, 1)]))
    return _model([helper.make_node(f"f{entry}", ["x"], ["y"], domain=DOMAIN)], functions)


def fan_out(levels: int, width: int = 2) -> onnx.ModelProto:
    """``f0`` calls ``f1`` ``width`` times, which calls ``f2`` ``width`` times, ...: width**levels nodes inlined."""
    return call_graph({i: [i + 1] * width if i < levels else [] for i in range(levels + 1)})


def nested_if(depth: int) -> onnx.ModelProto:
    """``depth`` If nodes, each in the ``then`` branch of the one before."""
    cond = numpy_helper.from_array(np.array(True), "cond")

    def branch(level: int) -> onnx.GraphProto:
        out = helper.make_tensor_value_info(f"o{level}", TensorProto.FLOAT, [4])
        if level == depth:
            node = helper.make_node("Identity", ["x"], [f"o{level}"])
        else:
            node = helper.make_node("If", ["cond"], [f"o{level}"], then_branch=branch(level + 1),
                                    else_branch=helper.make_graph([helper.make_node("Identity", ["x"], [f"e{level}"])],
                                                                  f"e{level}", [], [helper.make_tensor_value_info(
                                                                      f"e{level}", TensorProto.FLOAT, [4])]))
            node.output[0] = f"o{level}"
        return helper.make_graph([node], f"b{level}", [], [out])

    top = branch(1) if depth else None
    node = (helper.make_node("If", ["cond"], ["y"], then_branch=top, else_branch=helper.make_graph(
        [helper.make_node("Identity", ["x"], ["e0"])], "e0", [], [helper.make_tensor_value_info("e0", TensorProto.FLOAT, [4])]))
        if depth else helper.make_node("Identity", ["x"], ["y"]))
    return _model([node], inits=[cond])


def identities(count: int) -> onnx.ModelProto:
    nodes = [helper.make_node("Identity", [f"v{i}" if i else "x"], [f"v{i + 1}" if i + 1 < count else "y"])
             for i in range(count)]
    return _model(nodes)


def sparse_initializer(dims: list[int]) -> onnx.ModelProto:
    """A sparse initialiser ``s`` of shape ``dims`` with one stored value (a few bytes in the file)."""
    values = numpy_helper.from_array(np.array([1.0], np.float32), "s")
    indices = numpy_helper.from_array(np.array([0], np.int64), "s.indices")
    sparse = helper.make_sparse_tensor(values, indices, dims)
    return _model([helper.make_node("Identity", ["x"], ["y"])], sparse=[sparse])


def constant_of_shape(shape: list[int], dtype=np.float32) -> onnx.ModelProto:
    value = numpy_helper.from_array(np.zeros(1, dtype), "value")
    nodes = [helper.make_node("Constant", [], ["shape"], value=numpy_helper.from_array(np.array(shape, np.int64))),
             helper.make_node("ConstantOfShape", ["shape"], ["big"], name="fill", value=value),
             helper.make_node("Identity", ["x"], ["y"])]
    return _model(nodes)


def expand(source_shape: list[int], shape: list[int]) -> onnx.ModelProto:
    source = numpy_helper.from_array(np.ones(source_shape, np.float32), "source")
    target = numpy_helper.from_array(np.array(shape, np.int64), "target")
    nodes = [helper.make_node("Expand", ["source", "target"], ["big"], name="grow"),
             helper.make_node("Identity", ["x"], ["y"])]
    return _model(nodes, inits=[source, target])
