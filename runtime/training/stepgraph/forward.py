"""The forward model in the form a training step differentiates.

* parameters (trainable) and running statistics become graph inputs (an ONNX Runtime session
  cannot replace initialisers; as inputs they live in the runner's buffers between steps);
* ``BatchNormalization`` normalises with the batch's statistics, computed from primitives (ONNX
  Runtime's ``training_mode=1`` kernel is unreliable, see the shared notes): the differentiation
  package's ``batchnorm_training_form``; the running statistics
  ``momentum * running + (1 - momentum) * batch`` (biased variance, as ONNX Runtime training
  updates them) are output as ``NEW/<name>``;
* ``Dropout`` (active when its ``training_mode`` input is a switch, the onnxforge builders'
  ``training_mode`` initialiser) draws its mask from a counter-based hash of the element index, the
  step and the ``SEED`` input in int64 arithmetic: masks are the same on every runtime, a function
  of (seed, epoch, step) only, so a resumed run draws the masks an uninterrupted one draws;
* ``LSTM`` nodes stay: the differentiation package's LSTM rule (the node forward, a cell-state
  ``Scan`` and a backward ``Scan``) trains them. Measured against unrolling the node into
  ``Gemm``/elementwise ops over the data's length (T20, h64, batch 64, AdamW, 2 threads,
  alternating in one process): 0.94-1.13x the unrolled step's speed, 90 nodes instead of 674.

The evaluation form (``training=False``) keeps inference semantics: Dropout is the identity,
BatchNormalization uses the running statistics.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper

from onnxforge.runtime.autodiff import batchnorm_training_form
from onnxforge.runtime.errors import NotTrainableError
from onnxforge.runtime.modelio.protos import copy_model, is_default_domain
from onnxforge.runtime.training.stepgraph._rewrite import Nodes, opset_of

__all__ = ["training_forward", "NEW", "SEED", "STEP", "LR"]

NEW = "new/"  # prefix of the updated state's output names
SEED = "stepgraph.seed"  # int64 scalar: the dropout seed of the epoch
STEP = "stepgraph.step"  # float scalar: the 1-based optimizer step (AdamW's bias correction, dropout)
LR = "stepgraph.lr"  # float scalar: the learning rate of this step

_P = 2147483647  # 2^31 - 1: hash values stay below it, their squares below 2^62 (no int64 overflow)


def _params_to_inputs(model: onnx.ModelProto, names: list[str]) -> None:
    wanted = set(names)
    keep = [t for t in model.graph.initializer if t.name not in wanted]
    moved = {t.name: t for t in model.graph.initializer if t.name in wanted}
    missing = wanted - set(moved)
    if missing:
        raise NotTrainableError(f"parameters {sorted(missing)} are not initialisers of the model")
    del model.graph.initializer[:]
    model.graph.initializer.extend(keep)
    declared = {i.name for i in model.graph.input}
    for name in names:
        t = moved[name]
        if name not in declared:
            model.graph.input.append(helper.make_tensor_value_info(name, t.data_type, list(t.dims)))


def _fix_feed_shapes(model: onnx.ModelProto, feed_shapes: dict) -> None:
    """Non-batch dims of the data inputs as the training data has them (shapes the differentiation
    package can size statically)."""
    for vi in model.graph.input:
        shape = feed_shapes.get(vi.name)
        if shape is None or not vi.type.tensor_type.HasField("shape"):
            continue
        dims = vi.type.tensor_type.shape.dim
        if len(dims) != len(shape):
            continue
        dims[0].Clear()
        dims[0].dim_param = "batch"
        for d, n in zip(list(dims)[1:], shape[1:]):
            d.Clear()
            d.dim_value = int(n)


def _batchnorm_training(model: onnx.ModelProto, buffers: set) -> onnx.ModelProto:
    """The differentiation package's batch-statistics form of every BatchNormalization, the updated
    running statistics of ``buffers`` named ``NEW/<name>``."""
    if not any(n.op_type == "BatchNormalization" and n.domain in ("", "ai.onnx") for n in model.graph.node):
        return model
    model, updates = batchnorm_training_form(model, outputs=False)
    model.graph.node.extend(helper.make_node("Identity", [new], [NEW + stat], name=f"{NEW}{stat}.node")
                            for stat, new in updates.items() if stat in buffers)
    return model


def _dropout(node, nodes: Nodes, index: int) -> None:
    x = node.input[0]
    ratio = node.input[1] if len(node.input) > 1 and node.input[1] else nodes.const(0.5, np.float32)
    i64 = TensorProto.INT64
    n = nodes.op("Size", [x])
    idx = nodes.op("Reshape", [nodes.op("Range", [nodes.const(0, np.int64), n, nodes.const(1, np.int64)]),
                               nodes.op("Shape", [x])])
    step = nodes.op("Cast", [STEP], to=i64)
    key = nodes.op("Add", [nodes.op("Add", [SEED, nodes.op("Mul", [step, nodes.const(7919, np.int64)])]),
                           nodes.const(104729 * (index + 1), np.int64)])
    key = nodes.op("Mod", [key, nodes.const(_P, np.int64)])
    pmod = nodes.const(_P, np.int64)
    h = nodes.op("Mod", [nodes.op("Add", [nodes.op("Mul", [idx, nodes.const(48271, np.int64)]), key]), pmod])
    for c in (12345, 2718281):  # two rounds of h <- h^2 + c (mod p): consecutive indices decorrelate
        h = nodes.op("Mod", [nodes.op("Add", [nodes.op("Mul", [h, h]), nodes.const(c, np.int64)]), pmod])
    r = ratio
    threshold = nodes.op("Cast", [nodes.op("Mul", [r, nodes.const(float(_P), np.float32)])], to=i64)
    keep = nodes.op("GreaterOrEqual", [h, threshold],
                    out=node.output[1] if len(node.output) > 1 and node.output[1] else None)
    scale = nodes.op("Div", [nodes.const(1.0, np.float32), nodes.op("Sub", [nodes.const(1.0, np.float32), r])])
    mask = nodes.op("Mul", [nodes.op("Cast", [keep], to=TensorProto.FLOAT), scale])
    nodes.op("Mul", [x, mask], out=node.output[0])


def _dropout_active(node) -> bool:
    """A Dropout with a ``training_mode`` input (the builders' ``TRAINING_MODE`` switch, or any other
    value: the trainer's training graph runs in training mode) drops; one without is the identity,
    as ONNX defines it."""
    return len(node.input) > 2 and bool(node.input[2])


def training_forward(model: onnx.ModelProto, params: list[str], buffers: list[str], feed_shapes: dict,
                     *, training: bool = True) -> tuple[onnx.ModelProto, bool]:
    """A copy of ``model`` (plugin functions already inlined) in training form (or evaluation form
    with ``training=False``) with ``params`` and ``buffers`` as graph inputs. Returns the model and
    whether it has an active Dropout (then it reads the ``SEED`` input it declares, and ``STEP``,
    which the caller declares)."""
    out = copy_model(model)
    _params_to_inputs(out, list(params) + list(buffers))
    _fix_feed_shapes(out, feed_shapes)
    if training:
        out = _batchnorm_training(out, set(buffers))
    opset = opset_of(out)
    rewritten, extra, dropouts = [], [], 0
    for k, node in enumerate(out.graph.node):
        std = is_default_domain(node.domain)
        nodes = Nodes(f"train/{node.name or k}", opset)
        if std and node.op_type == "Dropout":
            if training and _dropout_active(node):
                _dropout(node, nodes, dropouts)
                dropouts += 1
            else:
                nodes.op("Identity", [node.input[0]], out=node.output[0])
        else:
            rewritten.append(node)
            continue
        rewritten.extend(nodes.nodes)
        extra.extend(nodes.initializers)
    del out.graph.node[:]
    out.graph.node.extend(rewritten)
    out.graph.initializer.extend(extra)
    if dropouts:  # STEP is an input of every training step (see build.py); SEED only with dropout
        out.graph.input.append(helper.make_tensor_value_info(SEED, TensorProto.INT64, []))
    return out, bool(dropouts)
