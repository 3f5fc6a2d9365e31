"""Luong attention over a memory, shared by the encoder-decoder (memory: the encoder's outputs) and
the captioner (memory: the ConvNet's feature map, one vector per location)."""

from __future__ import annotations

import numpy as np

from onnxforge.graphs._common import GraphBuilder, xavier_uniform

__all__ = ["luong_attention"]


def luong_attention(b: GraphBuilder, dec: str, memory: str, hidden: int, attention: str,
                    mask: str | None = None) -> str:
    """Decoder states ``dec`` [N, T, H] attending over ``memory`` [N, S, H].

    Scores are ``h_t . m_s`` ("dot") or ``h_t W m_s`` ("general", ``attention.weight`` [H, H]), plus
    ``mask`` (an additive [N, 1, S], e.g. -1e9 at padding) when given; the graph value
    ``attention`` [N, T, S] is their softmax over ``S``. Returns the attentional state
    ``tanh(W [context; h_t] + b)`` (``combine.weight`` [H, 2H], ``combine.bias``) flattened to
    [N*T, H], ready for the output layer."""
    query = dec
    if attention == "general":
        wa = b.param("attention.weight", xavier_uniform(b.rng, (hidden, hidden), hidden, hidden))
        query = b.node("MatMul", [dec, wa], ["attention.query"], name="attention.general")
    keys_t = b.node("Transpose", [memory], ["attention.keys_t"], name="attention.keys_t", perm=[0, 2, 1])
    scores = b.node("MatMul", [query, keys_t], ["attention.scores"], name="attention.score")  # [N, T, S]
    if mask is not None:
        scores = b.node("Add", [scores, mask], ["attention.masked_scores"], name="attention.mask_add")
    weights = b.node("Softmax", [scores], ["attention"], name="attention.softmax", axis=-1)
    context = b.node("MatMul", [weights, memory], ["attention.context"], name="attention.context")  # [N, T, H]
    both = b.node("Concat", [context, dec], ["combine.in"], name="combine.concat", axis=-1)  # [N, T, 2H]
    flat_shape = b.constant("combine.flat_shape", np.array([-1, 2 * hidden], np.int64))
    flat = b.node("Reshape", [both, flat_shape], ["combine.flat"], name="combine.flatten")
    comb = b.linear("combine", flat, 2 * hidden, hidden, init="xavier")
    return b.node("Tanh", [comb], ["combine.tanh"], name="combine.tanh")
