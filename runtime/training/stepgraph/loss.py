"""The losses of :mod:`onnxforge.runtime.tasks.losses` in standard ONNX, with their gradient.

The gradient of the loss with respect to the model's output is written directly (softmax minus
one-hot, scaled by the kept targets; ``(y - t) / N``) and handed to the differentiation package as
the cotangent of the output: the loss itself is never differentiated op by op.

``cross-entropy``: mean over the targets that are not ``ignore_index`` of ``-log softmax``; a
batch whose targets are all padding has loss 0 and gradient 0 (numpy's twin returns 0 too).
``mse``: ``1/(2N) * sum (y - t)^2``, gradient ``(y - t) / N``.

``scale`` (a float scalar input's name) multiplies the gradient, folded into the division by the
count (one scalar node): the SGD step hands its learning rate here, so its update is ``p - g``.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper

from onnxforge.runtime.errors import ConfigError
from onnxforge.runtime.tasks.losses import LOSSES, class_count, output_info, target_info, target_name
from onnxforge.runtime.training.stepgraph._rewrite import Nodes, opset_of

__all__ = ["add_loss", "LOSS"]

LOSS = "loss"


def _per(n: Nodes, x: str, count: str, scale: str | None, out: str | None = None) -> str:
    """``x / count``, or ``x * (scale / count)`` with a ``scale``."""
    if scale is None:
        return n.op("Div", [x, count], out=out)
    return n.op("Mul", [x, n.op("Div", [scale, count])], out=out)


def add_loss(model: onnx.ModelProto, output: str, loss: str, ignore_index: int | None = None,
             scale: str | None = None) -> tuple[str, str, str]:
    """Add (in place) the targets input, the loss and the loss's gradient with respect to
    ``output`` (times the scalar input ``scale`` when given). Returns ``(target input name, loss
    name, gradient name)``."""
    if loss not in LOSSES:
        raise ConfigError(f"loss must be one of {', '.join(LOSSES)}; got {loss!r}")
    info = output_info(model, output)
    labels = loss == "cross-entropy"
    target = target_info(info, target_name(loss), labels=labels)
    model.graph.input.append(target)
    n = Nodes("loss", opset_of(model))
    out_shape = n.op("Shape", [output])
    if labels:
        c = class_count(info)
        flat2d = len(info.type.tensor_type.shape.dim) == 2  # [N, C] scores, [N] labels: no reshapes
        scores = output if flat2d else n.op("Reshape", [output, n.const([-1, c], np.int64)])
        flat = target.name if flat2d else n.op("Reshape", [target.name, n.const([-1], np.int64)])
        if ignore_index is not None:
            lsm = n.op("LogSoftmax", [scores], axis=-1)
            valid = n.op("Not", [n.op("Equal", [flat, n.const(int(ignore_index), np.int64)])])
            flat = n.op("Where", [valid, flat, n.const(0, np.int64)])
            weight = n.op("Unsqueeze", [n.op("Cast", [valid], to=TensorProto.FLOAT), n.const([1], np.int64)])
            count = n.op("Max", [n.op("ReduceSum", [weight], keepdims=0), n.const(1.0, np.float32)])
        else:  # the standard op computes the mean of -log softmax at the labels and the log softmax
            lsm = n.name("logsoftmax")
            n.nodes.append(helper.make_node("SoftmaxCrossEntropyLoss", [scores, flat], [LOSS, lsm], name="loss.node",
                                            reduction="mean"))
            weight = None
            count = n.op("Cast", [n.op("Size", [flat])], to=TensorProto.FLOAT)
        onehot = n.op("OneHot", [flat, n.const(c, np.int64), n.const([0.0, 1.0], np.float32)], axis=-1)
        if weight is not None:
            onehot = n.op("Mul", [onehot, weight])  # padding rows: all zero
            picked = n.op("ReduceSum", [n.op("Mul", [onehot, lsm])], keepdims=0)
            n.op("Div", [n.op("Neg", [picked]), count], out=LOSS)
        soft = n.op("Exp", [lsm])
        if weight is not None:
            soft = n.op("Mul", [soft, weight])
        grad = _per(n, n.op("Sub", [soft, onehot]), count, scale, out="loss.grad" if flat2d else None)
        if not flat2d:
            grad = n.op("Reshape", [grad, out_shape], out="loss.grad")
    else:
        diff = n.op("Sub", [output, target.name])
        batch = n.op("Cast", [n.op("Gather", [out_shape, n.const(0, np.int64)], axis=0)], to=TensorProto.FLOAT)
        total = n.op("ReduceSum", [n.op("Mul", [diff, diff])], keepdims=0)
        n.op("Div", [n.op("Mul", [total, n.const(0.5, np.float32)]), batch], out=LOSS)
        grad = _per(n, diff, batch, scale, out="loss.grad")
    model.graph.node.extend(n.nodes)
    model.graph.initializer.extend(n.initializers)
    return target.name, LOSS, grad


def loss_output() -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(LOSS, TensorProto.FLOAT, [])
