"""The builder models every whole-model autodiff check runs on (no PyTorch here): one place that
says which models, batches and parameters each case has."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

from onnxforge.graphs import convnet, lstm, mlp, seq2seq
from onnxforge.runtime.autodiff import batchnorm_training_form

PLUGIN_ACTIVATIONS = ["swish", "gelu", "mish", "softplus", "elu"]
BUILDERS = (["mlp", "convnet", "convnet-batchnorm", "lstm-features", "lstm-tokens", "lstm-bidirectional",
             "lstm-tagger", "lstm-two-layers", "seq2seq-dot", "seq2seq-general"]
            + [f"mlp-{a}" for a in PLUGIN_ACTIVATIONS])


def float_params(model) -> list[str]:
    """The float initialisers a trainer would differentiate (not running statistics)."""
    return [t.name for t in model.graph.initializer
            if t.data_type == onnx.TensorProto.FLOAT and t.dims and "running" not in t.name]


def builder_case(name: str, rng: np.random.Generator):
    """``(model, feeds, wrt, output, forward_model)`` of builder case ``name``; ``model`` is what
    gets differentiated (batch norm in training form), ``forward_model`` the builder's own."""
    if name.startswith("mlp"):
        act = name.split("-", 1)[1] if "-" in name else "relu"
        m = mlp(6, [7, 5], 4, activation=act)
        feeds = {"x": rng.standard_normal((5, 6)).astype(np.float32)}
    elif name.startswith("convnet"):
        # conv2 has 8 input channels: its weight gradient takes the patches path, conv1's the Conv one
        m = convnet((2, 8, 8), (8, 6), kernel=3, pool=2, classes=5, batchnorm=name.endswith("batchnorm"))
        feeds = {"x": rng.standard_normal((3, 2, 8, 8)).astype(np.float32)}
    elif name.startswith("lstm"):
        kind = name.split("-", 1)[1]
        kw = dict(hidden=4, classes=3)
        if kind == "tokens":
            m = lstm(vocab=7, embed=3, **kw)
            feeds = {"x": rng.integers(0, 7, (3, 5)).astype(np.int64)}
        else:
            m = lstm(3, bidirectional=kind == "bidirectional", head="tagger" if kind == "tagger" else "sequence",
                     layers=2 if kind == "two-layers" else 1, **kw)
            feeds = {"x": rng.standard_normal((3, 5, 3)).astype(np.float32)}
    elif name.startswith("seq2seq"):
        m = seq2seq(9, 8, 4, 5, attention=name.split("-", 1)[1])
        src = rng.integers(3, 9, (3, 6)).astype(np.int64)
        src[0, -2:] = 0
        feeds = {"src": src, "decoder_input": rng.integers(1, 8, (3, 4)).astype(np.int64)}
    else:
        raise KeyError(name)
    wrt = float_params(m)
    _jitter(m, wrt, rng)
    forward = m
    if name.endswith("batchnorm"):
        m, _ = batchnorm_training_form(m)
    return m, feeds, wrt, "logits", forward


def _jitter(model, names, rng):
    """Add noise to the parameters: the builders start biases at zero, which puts hidden units
    of a sample whose previous layer is all zero exactly on the Relu kink (where a one-sided rule
    and central differences rightly disagree)."""
    for t in model.graph.initializer:
        if t.name in names:
            v = numpy_helper.to_array(t)
            t.CopyFrom(numpy_helper.from_array((v + 0.1 * rng.standard_normal(v.shape)).astype(v.dtype), t.name))


def weights(model) -> dict:
    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
