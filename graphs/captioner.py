"""The image caption generator of the deep-learning review's Figure 3: a ConvNet encodes the image,
its last feature map (one vector per location) is the memory that an LSTM decoder attends over
while it writes the caption one token at a time.

Inputs are ``image`` [N, C, H, W] (float) and ``decoder_input`` [N, T] (int64 token ids; teacher
forcing feeds ``BOS + caption[:-1]``); outputs are ``logits`` [N, T, vocab] and ``attention``
[N, T, L], each row a softmax over the ``L = H' * W'`` locations of the feature map (row-major:
location ``l`` is row ``l // W'``, column ``l % W'``). Token ids: 0 = PAD, 1 = BOS, 2 = EOS, 3 = UNK,
words from 4 (the word tokenizer's ids).
"""

from __future__ import annotations

from collections.abc import Sequence

from typing import Any

import numpy as np
import onnx

from onnxforge.graphs._attention import luong_attention
from onnxforge.graphs._common import BATCH, GraphBuilder, check_positive, float_input, int_input, xavier_uniform
from onnxforge.graphs.convnet import conv_stages, pooled_size
from onnxforge.graphs.seq2seq import BOS, EOS, PAD, _lstm_stack
from onnxforge.runtime.errors import ConfigError
from onnxforge.runtime.modelio.card import ModelCard

__all__ = ["captioner", "ATTENTIONS", "POSITION_STD"]

ATTENTIONS = ("dot", "general")
POSITION_STD = 0.1  # initial spread of the learned location vectors


def _shape(image_shape) -> tuple[int, int, int]:
    if isinstance(image_shape, (str, bytes)) or not isinstance(image_shape, Sequence) or len(image_shape) != 3:
        raise ConfigError(f"image_shape must be three positive integers (channels, height, width); got {image_shape!r}")
    c, h, w = (check_positive("each entry of image_shape", v) for v in image_shape)
    return c, h, w


def captioner(
    image_shape: Sequence[int] = (1, 8, 24),
    channels: Sequence[int] = (16, 32),
    vocab: int = 16,
    *,
    embed: int = 32,
    hidden: int = 64,
    attention: str = "dot",
    kernel: int = 3,
    pool: int = 2,
    max_len: int = 16,
    seed: int = 0,
    impl: str = "node",
    tokens: list[str] | None = None,
    tokenizer: dict | None = None,
) -> onnx.ModelProto:
    """Build ``(image [N, C, H, W], decoder_input [N, T]) -> logits [N, T, vocab], attention [N, T, L]``.

    Encoder: the ConvNet stages of :func:`~onnxforge.graphs.convnet.convnet` (``convI.weight``,
    ``convI.bias``; Conv, ReLU, MaxPool by ``pool``), then each location's ``channels[-1]`` features
    projected to ``hidden`` (``encoder.project.weight`` [hidden, channels[-1]], ``.bias``) plus a
    learned vector per location (``encoder.position`` [L, hidden], so the decoder can tell the
    locations apart): the memory [N, L, hidden]. Decoder: ``decoder.embedding.weight`` [vocab,
    embed], one LSTM (``decoder.lstm.W/R/B``, ONNX layout, started from zeros, so what it knows of
    the image comes through attention), Luong attention over the memory ("dot" or "general",
    ``attention.weight``; ``combine.weight``/``.bias``) and ``output.weight`` [vocab, hidden],
    ``output.bias``. ``impl`` "node" (ONNX ``LSTM``) or "unrolled" (plain ops over ``max_len``
    steps; captions then hold at most ``max_len`` tokens). ``tokens``/``tokenizer`` go into the card.
    """
    c_in, height, width = _shape(image_shape)
    given: Any = [channels] if isinstance(channels, (int, np.integer)) and not isinstance(channels, bool) else channels
    if isinstance(given, (str, bytes)) or not isinstance(given, Sequence) or not given:
        raise ConfigError(f"channels must be a non-empty sequence of positive integers; got {given!r}")
    widths = [check_positive("each entry of channels", c) for c in given]
    vocab = check_positive("vocab", vocab)
    if vocab < 5:
        raise ConfigError(f"vocab must count the 4 reserved ids (PAD, BOS, EOS, UNK) and at least one word; got {vocab}")
    embed, hidden = check_positive("embed", embed), check_positive("hidden", hidden)
    kernel, pool, max_len = check_positive("kernel", kernel), check_positive("pool", pool), check_positive("max_len", max_len)
    if attention not in ATTENTIONS:
        raise ConfigError(f"attention must be one of {', '.join(ATTENTIONS)}; got {attention!r}")
    if impl not in ("node", "unrolled"):
        raise ConfigError(f"impl must be one of node, unrolled; got {impl!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ConfigError(f"seed must be an integer; got {seed!r}")
    if tokens is not None and (len(tokens) != vocab or not all(isinstance(t, str) for t in tokens)):
        raise ConfigError(f"tokens must hold one string per id ({vocab}); got {len(tokens)} entries")
    h, w = pooled_size(height, width, len(widths), pool)
    locations = h * w

    b = GraphBuilder(int(seed))
    feat, features = conv_stages(b, "image", c_in, widths, kernel, pool)  # [N, F, h, w]
    flat = b.node("Reshape", [feat, b.constant("encoder.flat_shape", np.array([0, features, locations], np.int64))],
                  ["encoder.flat"], name="encoder.flatten")
    per_location = b.node("Transpose", [flat], ["encoder.locations"], name="encoder.locations", perm=[0, 2, 1])  # [N, L, F]
    weight = b.param("encoder.project.weight", xavier_uniform(b.rng, (hidden, features), features, hidden))
    weight_t = b.node("Transpose", [weight], ["encoder.project.weight_t"], name="encoder.project.transpose", perm=[1, 0])
    projected = b.node("MatMul", [per_location, weight_t], ["encoder.project.matmul"], name="encoder.project.matmul")
    projected = b.node("Add", [projected, b.param("encoder.project.bias", np.zeros(hidden, np.float32))],
                       ["encoder.project.out"], name="encoder.project")
    position = b.param("encoder.position",
                       (b.rng.standard_normal((locations, hidden)) * POSITION_STD).astype(np.float32))
    memory = b.node("Add", [projected, position], ["encoder.memory"], name="encoder.memory")  # [N, L, H]

    table = b.param("decoder.embedding.weight", b.rng.standard_normal((vocab, embed)).astype(np.float32))
    y = b.node("Gather", [table, "decoder_input"], ["decoder.embedded"], name="decoder.embedding", axis=0)
    y = b.node("Transpose", [y], ["decoder.embedded_t"], name="decoder.transpose_in", perm=[1, 0, 2])
    dec_tnh, _ = _lstm_stack(b, "decoder", y, embed, hidden, 1, None, max_len if impl == "unrolled" else None)
    dec = b.node("Transpose", [dec_tnh], ["decoder.outputs"], name="decoder.transpose_out", perm=[1, 0, 2])
    top = luong_attention(b, dec, memory, hidden, attention)
    flat_logits = b.linear("output", top, hidden, vocab, init="xavier")  # [N*T, V]
    nt = b.node("Shape", ["decoder_input"], ["output.nt"], name="output.nt")
    shape3 = b.node("Concat", [nt, b.constant("output.vocab", np.array([vocab], np.int64))], ["output.shape"],
                    name="output.shape", axis=0)
    b.node("Reshape", [flat_logits, shape3], ["logits"], name="output.unflatten")

    args = {"image_shape": [c_in, height, width], "channels": widths, "kernel": kernel, "pool": pool, "vocab": vocab,
            "embed": embed, "hidden": hidden, "attention": attention, "max_len": max_len, "seed": int(seed),
            "impl": impl, "locations": [h, w]}
    card = ModelCard(task="captioning", builder="captioner", args=args, inputs=["image", "decoder_input"],
                     output="logits", attention_output="attention", classes=vocab, max_len=max_len,
                     special_tokens={"pad": PAD, "bos": BOS, "eos": EOS},
                     tokens=None if tokens is None else list(tokens),
                     tokenizer=None if tokens is None else dict(tokenizer or {"kind": "word", "unknown": "refuse"}))
    return b.model(
        "captioner",
        [float_input("image", [BATCH, c_in, height, width]), int_input("decoder_input", [BATCH, "T"])],
        [float_input("logits", [BATCH, "T", vocab]), float_input("attention", [BATCH, "T", locations])],
        card,
        doc=f"image captioner {c_in}x{height}x{width}, channels {'-'.join(map(str, widths))}, {locations} locations, "
            f"LSTM hidden {hidden}, {attention} attention, vocab {vocab}; built by onnxforge",
    )
