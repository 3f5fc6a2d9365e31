"""The form a trained model is exported in.

An LSTM or encoder-decoder built with ``impl="unrolled"`` trains about 3x faster in ONNX Runtime
than the ``LSTM``-node build, but runs slower at inference (the unrolled T20 h64 LSTM: 285 us at
batch 1 against 47 us for ``LSTM`` nodes, one thread). Both builds have the same parameters, names
and shapes, and compute the same function (tests compare them), so a run trained on the unrolled
build exports the ``LSTM``-node build with the trained weights: train fast, serve fast.
"""

from __future__ import annotations

from onnx import ModelProto

from onnxforge.runtime.modelio.files import get_metadata, set_metadata

__all__ = ["inference_form"]

_REBUILT = ("lstm", "seq2seq")


def _node_build(builder: str, args: dict) -> ModelProto | None:
    from onnxforge import graphs

    kwargs = {k: v for k, v in args.items() if k != "impl"}
    try:
        return getattr(graphs, builder)(**kwargs, impl="node")
    except Exception:  # noqa: BLE001 - metadata from another version: keep the trained form
        return None


def inference_form(source: ModelProto) -> ModelProto:
    """A copy of ``source``, or of its ``LSTM``-node twin when it is an onnxforge unrolled build,
    holding ``source``'s initialisers and metadata (``args.impl`` set to ``"node"`` and
    ``trained_impl: "unrolled"`` added)."""
    meta = get_metadata(source)
    args = meta.get("args") if isinstance(meta.get("args"), dict) else {}
    model = None
    if meta.get("builder") in _REBUILT and args.get("impl") == "unrolled":
        twin = _node_build(meta["builder"], args)
        shapes = {t.name: tuple(t.dims) for t in source.graph.initializer}
        if twin is not None and {t.name: tuple(t.dims) for t in twin.graph.initializer} == shapes:
            values = {t.name: t for t in source.graph.initializer}
            for t in twin.graph.initializer:
                t.CopyFrom(values[t.name])
            del twin.metadata_props[:]
            twin.metadata_props.extend(source.metadata_props)
            model = set_metadata(twin, {"args": {**args, "impl": "node"}, "trained_impl": "unrolled"})
    if model is None:
        model = ModelProto()
        model.CopyFrom(source)
    return model
