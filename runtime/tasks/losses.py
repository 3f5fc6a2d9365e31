"""Losses: the training-graph blocks (ONNX Runtime ``onnxblock``) and their numpy twins, which
evaluation uses and tests compare against.

``cross-entropy``
    mean over non-ignored targets of ``-log softmax(logits)[label]``; logits ``[..., C]`` are
    flattened to ``[-1, C]`` and labels to ``[-1]``, so per-step outputs (``[N, T, C]``) work too.
    Targets equal to ``ignore_index`` (padding) count for nothing.
``mse``
    half the squared error summed over each example's outputs, averaged over the batch:
    ``E = 1/(2N) * sum_n sum_d (y_nd - t_nd)^2``. For one output this is the classic
    ``E = 1/2 (y - t)^2`` of the backpropagation literature, whose gradient is ``(y - t)``;
    it is half of PyTorch's ``MSELoss(reduction="sum") / N`` and equals ``MSELoss()`` * D / 2.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from onnxforge.runtime.errors import ConfigError
from onnxforge.runtime.ort.distribution import training_api

__all__ = ["LOSSES", "class_count", "loss_block", "numpy_loss", "output_info", "target_info", "target_name"]

LOSSES = ("cross-entropy", "mse")


def target_name(loss: str) -> str:
    """Name of the targets input that the training graph gets for ``loss``."""
    return "labels" if loss == "cross-entropy" else "target"


def _base_block():
    _, onnxblock, _ = training_api()
    return onnxblock.Block


def output_info(model: onnx.ModelProto, name: str) -> onnx.ValueInfoProto:
    """The graph output ``name`` of ``model``, or a one-line error."""
    for out in model.graph.output:
        if out.name == name:
            return out
    raise ConfigError(f"the model has no output {name!r}")


def loss_block(loss: str, ignore_index: int | None = None):
    """An ``onnxblock`` Block adding ``loss`` on top of the model output it is called with."""
    if loss not in LOSSES:
        raise ConfigError(f"loss must be one of {', '.join(LOSSES)}; got {loss!r}")
    Block: Any = _base_block()  # onnxblock.Block, imported only when a loss block is asked for

    class CrossEntropy(Block):
        def build(self, scores: str) -> str:
            graph = self.base.graph
            ignore: dict[str, Any] = {"ignore_index": int(ignore_index)} if ignore_index is not None else {}
            out = output_info(self.base, scores)
            labels = _add_target_input(graph, out, target_name("cross-entropy"), labels=True)
            flat_scores_shape = "loss.scores_shape"
            flat_labels_shape = "loss.labels_shape"
            graph.node.extend([
                _constant(flat_scores_shape, np.array([-1, class_count(out)], np.int64)),
                _constant(flat_labels_shape, np.array([-1], np.int64)),
                helper.make_node("Reshape", [scores, flat_scores_shape], ["loss.scores2d"], name="loss.reshape_scores"),
                helper.make_node("Reshape", [labels.name, flat_labels_shape], ["loss.labels1d"], name="loss.reshape_labels"),
                helper.make_node(
                    "SoftmaxCrossEntropyLoss", ["loss.scores2d", "loss.labels1d"], ["loss", "loss.log_prob"],
                    name="loss.sce", reduction="mean", **ignore,
                ),
            ])
            return "loss"

    class HalfSquaredError(Block):
        def build(self, output: str) -> str:
            graph = self.base.graph
            target = _add_target_input(graph, output_info(self.base, output), target_name("mse"), labels=False)
            graph.node.extend([
                _constant("loss.half", np.array(0.5, np.float32)),
                _constant("loss.batch_axis", np.array([0], np.int64)),
                helper.make_node("Sub", [output, target.name], ["loss.diff"], name="loss.sub"),
                helper.make_node("Mul", ["loss.diff", "loss.diff"], ["loss.sq"], name="loss.square"),
                helper.make_node("ReduceSum", ["loss.sq"], ["loss.sum"], name="loss.sum", keepdims=0),
                helper.make_node("Shape", [output], ["loss.shape"], name="loss.shape"),
                helper.make_node("Gather", ["loss.shape", "loss.batch_axis"], ["loss.n_i"], name="loss.n", axis=0),
                helper.make_node("Cast", ["loss.n_i"], ["loss.n_f"], name="loss.cast", to=TensorProto.FLOAT),
                helper.make_node("ReduceSum", ["loss.n_f"], ["loss.n_s"], name="loss.n_scalar", keepdims=0),
                helper.make_node("Div", ["loss.sum", "loss.n_s"], ["loss.mean"], name="loss.div"),
                helper.make_node("Mul", ["loss.mean", "loss.half"], ["loss"], name="loss.halve"),
            ])
            return "loss"

    return CrossEntropy() if loss == "cross-entropy" else HalfSquaredError()


def target_info(out: onnx.ValueInfoProto, name: str, *, labels: bool) -> onnx.ValueInfoProto:
    """The targets' value info, shaped like ``out`` (class labels: int64, last axis dropped)."""
    target = onnx.ValueInfoProto()
    target.CopyFrom(out)
    target.name = name
    if labels:
        target.type.tensor_type.elem_type = TensorProto.INT64
        del target.type.tensor_type.shape.dim[-1]
    return target


def _add_target_input(graph, out: onnx.ValueInfoProto, name: str, *, labels: bool) -> onnx.ValueInfoProto:
    """A graph input for the targets (see :func:`target_info`)."""
    target = target_info(out, name, labels=labels)
    graph.input.append(target)
    return target


def _constant(name: str, value: np.ndarray) -> onnx.NodeProto:
    return helper.make_node("Constant", [], [name], name=f"{name}.const", value=numpy_helper.from_array(value, name))


def class_count(info: onnx.ValueInfoProto) -> int:
    """The fixed class count on the last axis of a scores output, or a one-line error."""
    dims = info.type.tensor_type.shape.dim
    if not dims or not dims[-1].HasField("dim_value"):
        raise ConfigError(f"cross-entropy needs a fixed class count on the last axis of output {info.name!r}")
    return int(dims[-1].dim_value)


def log_softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def numpy_loss(loss: str, output: np.ndarray, target: np.ndarray, ignore_index: int | None = None) -> float:
    """The same loss in numpy (float64), for evaluation and as a test reference."""
    if loss == "cross-entropy":
        scores = output.reshape(-1, output.shape[-1]).astype(np.float64)
        labels = target.reshape(-1).astype(np.int64)
        keep = labels != ignore_index if ignore_index is not None else np.ones_like(labels, bool)
        if not keep.any():
            return 0.0
        lp = log_softmax(scores[keep])
        return float(-lp[np.arange(lp.shape[0]), labels[keep]].mean())
    diff = output.astype(np.float64) - target.astype(np.float64)
    return float(0.5 * np.sum(diff * diff) / max(output.shape[0], 1))
