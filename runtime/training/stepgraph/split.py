"""A training step split in two standard ONNX models, for workers that average their gradients
between them: the **gradient** model (forward in training form, loss, backward; outputs the loss,
every trainable parameter's gradient and the updated running statistics, updating nothing) and
the **update** model (the optimizer step from a given gradient). Both are built from stepgraph's
pieces, so the arithmetic is the fused step's (:func:`onnxforge.runtime.training.stepgraph.build_step`):
``training_forward``, ``add_loss``, ``autodiff.build_gradients`` and ``add_updates``.

Gradient model inputs: the data feeds, the targets, ``STEP`` (dropout masks depend on it),
``SEED`` (with dropout), the trainable parameters and the running statistics. Outputs: ``loss``,
``GRAD + name`` per parameter, ``NEW + name`` per running statistic the forward updates.
Update model inputs: each parameter, its optimizer state (carried as stepgraph carries it),
``GRAD + name`` and the step's scalars (``LR`` for SGD, AdamW's ``ADAMW_SCALARS``); outputs
``NEW + name`` for each parameter and state.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto, helper

from onnxforge.runtime.autodiff import MAX_IR_VERSION, build_gradients
from onnxforge.runtime.training.stepgraph._rewrite import Nodes, opset_of
from onnxforge.runtime.training.stepgraph.forward import LR, NEW, STEP, training_forward
from onnxforge.runtime.training.stepgraph.loss import add_loss
from onnxforge.runtime.training.stepgraph.optim import ADAMW_SCALARS, MOMENT_SCALES, adamw_scalars, add_updates, moment_names
from onnxforge.runtime.training.stepgraph.pack import Packing

__all__ = ["GRAD", "GradientGraph", "Update", "build_gradient_step", "build_update", "opset_of"]

GRAD = "allreduce.grad/"  # prefix of the gradient outputs (and of the update model's gradient inputs)


@dataclass
class GradientGraph:
    model: onnx.ModelProto
    feeds: list[str]       # data inputs, in the forward model's order
    target: str
    seeded: bool
    buffers: list[str]     # running statistics with a NEW + name output


def _value(name: str, like: onnx.ValueInfoProto) -> onnx.ValueInfoProto:
    v = onnx.ValueInfoProto()
    v.CopyFrom(like)
    v.name = name
    return v


def build_gradient_step(model: onnx.ModelProto, *, output: str, loss: str, trainable: list[str], buffers=(),
                        feed_shapes: dict | None = None, ignore_index: int | None = None) -> GradientGraph:
    """The gradient model of ``model`` (see the module docstring)."""
    inits = {t.name for t in model.graph.initializer}
    feeds = [i.name for i in model.graph.input if i.name not in inits]
    fwd, seeded = training_forward(model, list(trainable), list(buffers), dict(feed_shapes or {}), training=True)
    fwd.graph.input.append(helper.make_tensor_value_info(STEP, TensorProto.FLOAT, []))
    target, loss_name, seed = add_loss(fwd, output, loss, ignore_index)
    infos = {i.name: i for i in fwd.graph.input}
    graph, grads = build_gradients(fwd, list(trainable), output, seed, prefix="grad",
                                   grad_names={p: GRAD + p for p in trainable})
    produced = {o for node in graph.graph.node for o in node.output}
    kept = [b for b in buffers if NEW + b in produced]
    outputs = [helper.make_tensor_value_info(loss_name, TensorProto.FLOAT, [])]
    outputs += [_value(grads[p], infos[p]) for p in trainable] + [_value(NEW + b, infos[b]) for b in kept]
    del graph.graph.output[:]
    graph.graph.output.extend(outputs)
    del graph.graph.value_info[:]
    graph.ir_version = min(graph.ir_version, MAX_IR_VERSION)
    onnx.checker.check_model(graph, full_check=True)
    return GradientGraph(graph, feeds, target, seeded, kept)


def build_update(params: dict[str, onnx.ValueInfoProto], optimizer: str, weight_decay: float, opset: int) -> Update:
    """The update model for ``params`` (name -> the parameter's value info)."""
    n = Nodes("update", opset)
    add_updates(n, optimizer, {p: GRAD + p for p in params}, weight_decay)
    inputs, outputs, carried = [], [], []
    for p, info in params.items():
        for name in [p, *moment_names(optimizer, p)]:
            inputs.append(_value(name, info))
            outputs.append(_value(NEW + name, info))
            carried.append(name)
        inputs.append(_value(GRAD + p, info))
    scalars = ADAMW_SCALARS if optimizer == "adamw" else (LR,)
    inputs += [helper.make_tensor_value_info(k, TensorProto.FLOAT, []) for k in scalars]
    graph = helper.make_graph(n.nodes, "update", inputs, outputs, initializer=n.initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = min(model.ir_version, MAX_IR_VERSION)
    onnx.checker.check_model(model, full_check=True)
    scales = {m: MOMENT_SCALES[k] for p in params for k, m in enumerate(moment_names(optimizer, p))}
    return Update(model, carried, Packing(scales=scales), optimizer, float(weight_decay))


@dataclass
class Update:
    """The update model, the names it carries and how the optimizer state is carried (AdamW's
    moments scaled, see stepgraph.optim): ``run`` takes and returns the named values."""

    model: onnx.ModelProto
    carried: list[str]       # parameters and their optimizer state, by name
    packing: Packing         # named value <-> carried input (the moments' scales)
    optimizer: str
    weight_decay: float

    def feeds(self, values: dict, grads: dict, lr: float, step: int) -> dict:
        feeds = self.packing.pack({k: values[k] for k in self.carried})
        feeds.update({GRAD + p: g for p, g in grads.items()})
        if self.optimizer == "adamw":
            feeds.update(adamw_scalars(lr, step, self.weight_decay))
        else:
            feeds[LR] = np.array(lr, np.float32)
        return feeds

    def results(self, outputs: list) -> dict:
        """The named values from the session's outputs (in ``NEW + carried`` order)."""
        return self.packing.unpack(dict(zip(self.carried, outputs)))
