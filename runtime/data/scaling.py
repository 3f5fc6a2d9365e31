"""Feature scaling learned from a training table, written into the model as ONNX nodes at its input.

``x_scaled = (x - mean) / std`` runs as a ``Sub`` and a ``Div`` on ``Constant`` nodes (not
initializers, so no trainer ever takes them for parameters) in front of everything that read the
input. The scaling lives in the graph rather than only in the model card because a table's rows
are the model's input as they are: ``infer``, ``load(...).predict``, a float tensor sent over HTTP
and any other ONNX tool then give the same answer for the same raw row, with nothing to apply
outside. The card records the statistics too (``preprocessing.feature_scaling``, ``in_graph``:
true) for people who read it; nothing applies them a second time.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import ModelProto, helper, numpy_helper

from onnxforge.runtime.modelio.protos import copy_model

__all__ = ["with_feature_scaling", "SCALED_SUFFIX"]

SCALED_SUFFIX = "_scaled"


def with_feature_scaling(model: ModelProto, mean, std, input_name: str | None = None) -> ModelProto:
    """A copy of ``model`` whose float input (the first, or ``input_name``) is standardised in the graph."""
    out = copy_model(model)
    graph = out.graph
    name = input_name or graph.input[0].name
    scaled = name + SCALED_SUFFIX
    mean = np.asarray(mean, np.float32).reshape(1, -1)
    std = np.asarray(std, np.float32).reshape(1, -1)
    for node in graph.node:
        for i, value in enumerate(node.input):
            if value == name:
                node.input[i] = scaled
    for output in graph.output:
        if output.name == name:
            raise ValueError(f"input '{name}' is also an output; it cannot be scaled in place")
    nodes = [
        helper.make_node("Constant", [], [f"{name}_mean"], name="feature_scaling_mean",
                         value=numpy_helper.from_array(mean, f"{name}_mean")),
        helper.make_node("Constant", [], [f"{name}_std"], name="feature_scaling_std",
                         value=numpy_helper.from_array(std, f"{name}_std")),
        helper.make_node("Sub", [name, f"{name}_mean"], [f"{name}_centred"], name="feature_scaling_sub"),
        helper.make_node("Div", [f"{name}_centred", f"{name}_std"], [scaled], name="feature_scaling_div"),
    ]
    rest = list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes + rest)
    onnx.checker.check_model(out)
    return out
