"""The form a trained model is exported in.

An LSTM or encoder-decoder built with ``impl="unrolled"`` trains about 3x faster in ONNX Runtime
than the ``LSTM``-node build, but runs slower at inference (the unrolled T20 h64 LSTM: 285 us at
batch 1 against 47 us for ``LSTM`` nodes, one thread). Both builds have the same parameters, names
and shapes, and compute the same function (tests compare them), so a run trained on the unrolled
build exports the ``LSTM``-node build with the trained weights: train fast, serve fast.
"""

from __future__ import annotations

from onnx import ModelProto

from onnxforge.runtime.modelio.card import ModelCard
from onnxforge.runtime.passes.base import FunctionalPass, PassResult, copy_model
from onnxforge import graphs

__all__ = ["InferenceForm", "inference_form"]

_REBUILT = ("lstm", "seq2seq")


def _node_build(builder: str, args: dict) -> ModelProto | None:
    kwargs = {k: v for k, v in args.items() if k != "impl"}
    try:
        return getattr(graphs, builder)(**kwargs, impl="node")
    except Exception:  # noqa: BLE001 - metadata from another version: keep the trained form
        return None


def _twin(source: ModelProto) -> ModelProto | None:
    """The ``LSTM``-node twin of an onnxforge unrolled build with ``source``'s initialisers and
    metadata (``args.impl`` set to ``"node"``, ``trained_impl: "unrolled"`` added), else ``None``."""
    card = ModelCard.from_model(source)
    if card.builder not in _REBUILT or card.args.get("impl") != "unrolled":
        return None
    twin = _node_build(card.builder, card.args)
    shapes = {t.name: tuple(t.dims) for t in source.graph.initializer}
    if twin is None or {t.name: tuple(t.dims) for t in twin.graph.initializer} != shapes:
        return None
    values = {t.name: t for t in source.graph.initializer}
    for t in twin.graph.initializer:
        t.CopyFrom(values[t.name])
    del twin.metadata_props[:]
    twin.metadata_props.extend(source.metadata_props)
    return card.updated({"args": {**card.args, "impl": "node"}, "trained_impl": "unrolled"}).write_into(twin)


def inference_form(source: ModelProto) -> ModelProto:
    """A copy of ``source``, or its ``LSTM``-node twin when it is an onnxforge unrolled build."""
    twin = _twin(source)
    return twin if twin is not None else copy_model(source)


class InferenceForm(FunctionalPass):
    """The export pass: an unrolled build becomes its ``LSTM``-node twin; other models pass as they are."""

    name = "inference-form"

    def call(self, model: ModelProto) -> PassResult:
        twin = _twin(model)
        return PassResult(model, False) if twin is None else PassResult(twin, True)
