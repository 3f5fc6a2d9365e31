"""What the step-graph tests build steps from: a model's trainable parameters and running
statistics, and every value a step carries, by name, at its start."""

from __future__ import annotations

import numpy as np
from onnx import numpy_helper

from onnxforge.runtime.passes.gradient_form import state_buffers, trainable_parameters


def split_parameters(model):
    """``(trainable, buffers)``: the parameters the optimizer updates and the running statistics."""
    params = trainable_parameters(model)
    buffers = [b for b in state_buffers(model) if b in params]
    return [p for p in params if p not in buffers], buffers


def start_values(model, graph):
    """Every carried value by name: the model's initialisers, zero moments."""
    init = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    out = {}
    for name in graph.names():
        base = name.split("/", 1)[1] if name.startswith("adamw.") else name
        out[name] = init[name] if name in init else np.zeros_like(init[base])
    return out
