"""Small models whose tensors keep their data in other files, for the loader's hostile-input and
fuzz tests: ``y = x + w`` with ``w`` float32 [4] declared external however a test likes."""

from __future__ import annotations

import onnx
from onnx import TensorProto, helper


def external(tensor: TensorProto, pairs=(), **entries) -> TensorProto:
    """Mark ``tensor`` external with these ``external_data`` entries (``pairs`` may repeat keys)."""
    tensor.data_location = TensorProto.EXTERNAL
    for key, value in [*pairs, *entries.items()]:
        entry = tensor.external_data.add()
        entry.key, entry.value = key, str(value)
    return tensor


def weight(pairs=(), **entries) -> TensorProto:
    """``w`` float32 [4] with its data declared external."""
    return external(TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[4]), pairs, **entries)


def add_model(w: TensorProto | None = None, nodes=None, sparse=None) -> onnx.ModelProto:
    """``y = x + w`` (or ``nodes``) over ``x`` float32 [4], opset 17, IR 8."""
    nodes = nodes or [helper.make_node("Add", ["x", "w"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])],
                              [w] if w is not None else [], sparse_initializer=sparse)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model
