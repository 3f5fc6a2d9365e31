"""One training step as one standard ONNX model, and the evaluation model beside it.

Training step inputs: the data feeds, the targets (``labels`` or ``target``), ``LR`` and ``STEP``
(float scalars), AdamW's per-step scalars (``ADAMW_SCALARS``, from ``graph.scalar_values``),
``SEED`` (int64, only with dropout), the trainable parameters (small ones packed in one flat
buffer), the optimizer state (``adamw.m/P``, ``adamw.v/P``, scaled, packed alike) and the running
statistics; ``graph.pack``/``graph.unpack`` convert named values to and from the state inputs. Outputs: ``loss``, then ``NEW + name``
for every parameter, optimizer state and running statistic (the runner feeds them back as the next
step's inputs), and optionally the model's output. Only ``ai.onnx`` ops, opset >= 17, IR <= 10.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import onnx
from onnx import TensorProto, helper

from onnxforge.runtime.autodiff import MAX_IR_VERSION, build_gradients
from onnxforge.runtime.modelio.protos import subgraphs
from onnxforge.runtime.training.stepgraph._rewrite import Nodes, opset_of
from onnxforge.runtime.training.stepgraph.forward import LR, NEW, STEP, training_forward
from onnxforge.runtime.training.stepgraph.kernels import faster_kernels, fold_sgd_updates
from onnxforge.runtime.training.stepgraph.scalars import rank_scalars
from onnxforge.runtime.training.stepgraph.loss import add_loss
from onnxforge.runtime.training.stepgraph.optim import (ADAMW_SCALARS, MOMENT_SCALES, OPTIMIZERS, adamw_scalars,
                                                        add_updates, moment_names)
from onnxforge.runtime.training.stepgraph.pack import PARAMS, Packing, pack_parameters, packable

__all__ = ["StepGraph", "build_step", "build_eval"]


@dataclass
class StepGraph:
    """A built model and the roles of its inputs and outputs."""

    model: onnx.ModelProto
    feeds: list[str]                  # data inputs, in the forward model's order
    target: str                       # the targets input
    state: list[str] = field(default_factory=list)   # inputs carried step to step (params, moments, stats)
    updates: list[str] = field(default_factory=list)  # the outputs that replace them (same order)
    seeded: bool = False              # reads SEED (has dropout)
    output: str | None = None         # the model's output, when it is an output here
    packing: Packing = field(default_factory=Packing)  # flat state inputs and the named values in them
    scalars: tuple = ()               # per-step scalar inputs computed outside (AdamW's, see optim)
    weight_decay: float = 0.0

    def scalar_values(self, lr: float, step: int) -> dict:
        """The values of :attr:`scalars` for step ``step`` (1-based) at rate ``lr``."""
        return adamw_scalars(lr, step, self.weight_decay) if self.scalars else {}

    def names(self) -> list[str]:
        """The carried values by name (parameters, moments, statistics), packed or not."""
        return self.packing.names(self.state)

    def pack(self, values: dict) -> dict:
        """Named carried values -> this graph's state inputs."""
        return self.packing.pack(values)

    def unpack(self, values: dict) -> dict:
        """This graph's state inputs -> the named carried values."""
        return self.packing.unpack(values)


def _feeds(model: onnx.ModelProto) -> list[str]:
    inits = {t.name for t in model.graph.initializer}
    return [i.name for i in model.graph.input if i.name not in inits]


def _reads(node) -> set:
    """The names ``node`` reads, its subgraphs' outer-scope names included (a superset is fine)."""
    names = {i for i in node.input if i}
    for g in subgraphs(node):
        for n in g.node:
            names |= _reads(n)
    return names


def _prune(model: onnx.ModelProto) -> None:
    """Drop the nodes and initialisers no output needs (the forward's other outputs, say)."""
    needed = {o.name for o in model.graph.output}
    live = []
    for node in reversed(model.graph.node):
        if any(o in needed for o in node.output if o):
            live.append(node)
            needed |= _reads(node)
    del model.graph.node[:]
    model.graph.node.extend(live[::-1])
    inits = [t for t in model.graph.initializer if t.name in needed]
    del model.graph.initializer[:]
    model.graph.initializer.extend(inits)


def _value(name: str, like: onnx.ValueInfoProto) -> onnx.ValueInfoProto:
    v = onnx.ValueInfoProto()
    v.CopyFrom(like)
    v.name = name
    return v


def _finish(model: onnx.ModelProto, outputs: list[onnx.ValueInfoProto]) -> onnx.ModelProto:
    del model.graph.output[:]
    model.graph.output.extend(outputs)
    del model.graph.value_info[:]
    _prune(model)
    model.graph.name = model.graph.name or "step"
    onnx.checker.check_model(model, full_check=True)
    return model


def build_step(model: onnx.ModelProto, *, output: str, loss: str, optimizer: str, trainable: list[str],
               buffers: Sequence[str] = (), feed_shapes: dict | None = None, ignore_index: int | None = None,
               weight_decay: float = 0.0, with_output: bool = False, pack: bool = True, constants: Sequence[str] = (),
               views: bool = False) -> StepGraph:
    """The training step of ``model`` (plugin functions inlined; frozen parameters left as
    initialisers). ``feed_shapes`` maps data inputs to a batch's shape (fixes their non-batch dims).
    ``pack``: the small trainable parameters and their optimizer state in flat buffers (see
    :mod:`.pack`; ``graph.pack``/``graph.unpack`` convert), else one input per value. ``constants``:
    graph inputs that are not data (weights fed unchanged every step), left out of ``feeds``."""
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}; got {optimizer!r}")
    buffers = list(buffers)
    fwd, seeded = training_forward(model, list(trainable), buffers, dict(feed_shapes or {}), training=True)
    feeds = [f for f in _feeds(model) if f not in set(constants)]
    fwd.graph.input.extend([helper.make_tensor_value_info(LR, TensorProto.FLOAT, []),
                            helper.make_tensor_value_info(STEP, TensorProto.FLOAT, [])])
    sgd = optimizer == "sgd"  # the rate folded into the loss's gradient: the update is p - g
    target, loss_name, seed = add_loss(fwd, output, loss, ignore_index, scale=LR if sgd else None)
    out_info = next(o for o in fwd.graph.output if o.name == output)
    params_info = {i.name: i for i in fwd.graph.input}
    graph, grads = build_gradients(fwd, list(trainable), output, seed, prefix="grad")
    faster_kernels(graph)
    n = Nodes("update", opset_of(graph))
    packing = Packing()
    small = packable(graph, list(trainable)) if pack else []
    if small:
        flat, layout = pack_parameters(graph, small, grads, views)
        packing.packs[PARAMS] = layout
        packing.views = {PARAMS} if views else set()
        for k, m in enumerate(moment_names(optimizer, PARAMS)):
            packing.packs[m] = [(moment_names(optimizer, p)[k], shape) for p, shape in layout]
        grads = {PARAMS: flat, **grads}
        trainable = [PARAMS, *[p for p in trainable if p not in small]]
        params_info[PARAMS] = next(i for i in graph.graph.input if i.name == PARAMS)
    add_updates(n, optimizer, {p: grads[p] for p in trainable}, weight_decay, scaled=sgd)
    scalars = ADAMW_SCALARS if optimizer == "adamw" else ()
    graph.graph.input.extend(helper.make_tensor_value_info(k, TensorProto.FLOAT, []) for k in scalars)
    graph.graph.node.extend(n.nodes)
    graph.graph.initializer.extend(n.initializers)
    if sgd:  # the large weights' p - g folded into their gradient's Gemm (see kernels)
        fold_sgd_updates(graph, {NEW + p: p for p in trainable})
    state, outputs = [], [helper.make_tensor_value_info(loss_name, TensorProto.FLOAT, [])]
    for p in trainable:
        for name in [p, *moment_names(optimizer, p)]:
            if name != p:
                graph.graph.input.append(_value(name, params_info[p]))
                packing.scales[name] = MOMENT_SCALES[moment_names(optimizer, p).index(name)]
            state.append(name)
            outputs.append(_value(NEW + name, params_info[p]))
    for b in buffers:
        if any(NEW + b in node.output for node in graph.graph.node):
            state.append(b)
            outputs.append(_value(NEW + b, params_info[b]))
    if with_output:
        outputs.append(out_info)
    rank_scalars(graph)  # scalars at their tensor's rank: ONNX Runtime's fast broadcast (see .scalars)
    return StepGraph(_finish(graph, outputs), feeds, target, state, [NEW + s for s in state], seeded,
                     output if with_output else None, packing, scalars, float(weight_decay))


def build_eval(model: onnx.ModelProto, *, output: str, loss: str, params: list[str], buffers: Sequence[str] = (),
               ignore_index: int | None = None, constants: Sequence[str] = ()) -> StepGraph:
    """The evaluation model: ``params`` and ``buffers`` as inputs, outputs ``loss`` and ``output``
    (inference semantics: no dropout, running statistics, LSTM nodes kept)."""
    fwd, _ = training_forward(model, list(params), list(buffers), {}, training=False)
    target, loss_name, _ = add_loss(fwd, output, loss, ignore_index)
    out_info = next(o for o in fwd.graph.output if o.name == output)
    outputs = [helper.make_tensor_value_info(loss_name, TensorProto.FLOAT, []), out_info]
    fwd.ir_version = min(fwd.ir_version, MAX_IR_VERSION)
    feeds = [f for f in _feeds(model) if f not in set(constants)]
    return StepGraph(_finish(fwd, outputs), feeds, target, list(params) + list(buffers), [], False, output)
