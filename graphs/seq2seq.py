"""The encoder-decoder with attention: token embeddings, an LSTM encoder, an LSTM decoder started
from the encoder's final states, Luong attention over the encoder outputs, and an output layer.

Inputs are ``src`` [N, S] and ``decoder_input`` [N, T] (int64 token ids; teacher forcing feeds
``BOS + target[:-1]``); outputs are ``logits`` [N, T, tgt_vocab] and, with attention,
``attention`` [N, T, S] (each row a softmax over the source positions, padding masked out).
Token ids: 0 = PAD, 1 = BOS, 2 = EOS, 3 and up = symbols; a vocabulary size counts them all.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import onnx

from onnxforge.graphs._attention import luong_attention
from onnxforge.graphs._common import BATCH, GraphBuilder, check_positive, float_input, int_input
from onnxforge.graphs._lstm_unrolled import unrolled_lstm_up_to
from onnxforge.graphs._padding import PAD, TokenSteps, skip_padding
from onnxforge.runtime.errors import ConfigError
from onnxforge.runtime.modelio.card import ModelCard

__all__ = ["seq2seq", "ATTENTIONS", "PAD", "BOS", "EOS"]

ATTENTIONS = ("dot", "general", None)
BOS, EOS = 1, 2  # and PAD = 0 (graphs/_padding.py)
_MASK = -1e9  # added to the scores of padded source positions before the softmax


def _lstm_params(b: GraphBuilder, prefix: str, inputs: int, hidden: int) -> tuple[str, str, str]:
    """ONNX LSTM weights (gate order i, o, f, c): W [1, 4H, I], R [1, 4H, H], B [1, 8H].

    Drawn like PyTorch's ``nn.LSTM``: U(-1/sqrt(H), 1/sqrt(H)).
    """
    k = 1.0 / math.sqrt(hidden)
    u = lambda *shape: np.asarray(b.rng.uniform(-k, k, shape), np.float32)  # noqa: E731
    return (b.param(f"{prefix}.W", u(1, 4 * hidden, inputs)), b.param(f"{prefix}.R", u(1, 4 * hidden, hidden)),
            b.param(f"{prefix}.B", u(1, 8 * hidden)))


def _lstm_stack(b: GraphBuilder, prefix: str, x_tnd: str, inputs: int, hidden: int, layers: int,
                initial: list[tuple[str, str]] | None, steps: int | None = None,
                source: TokenSteps | None = None) -> tuple[str, list[tuple[str, str]]]:
    """Stacked one-direction LSTMs over ``x_tnd`` [T, N, D]; returns Y [T, N, H] and each layer's
    (h, c). With ``source`` (the encoder), each layer keeps its state through the source's padding."""
    axis1 = b.constant(f"{prefix}.axis1", np.array([1], np.int64))
    states = []
    x, fan_in = x_tnd, inputs
    for layer in range(layers):
        p = f"{prefix}.lstm" if layers == 1 else f"{prefix}.lstm{layer + 1}"
        w, r, bias = _lstm_params(b, p, fan_in, hidden)
        h0, c0 = initial[layer] if initial else ("", "")
        if steps is not None:  # impl="unrolled": plain ops over up to `steps` steps, same function
            x, yh, yc = unrolled_lstm_up_to(b, p, x, w, r, bias, hidden, steps, (h0, c0) if initial else None,
                                            mask=source.valid if source else None)
            states.append((yh, yc))
            fan_in = hidden
            continue
        x_in, w_in = skip_padding(b, p, x, fan_in, w, hidden, source.padding) if source else (x, w)
        # 7 inputs (X, W, R, B, sequence_lens, initial_h, initial_c): the form ORT's LSTM gradient needs
        y, yh, yc = b.node("LSTM", [x_in, w_in, r, bias, "", h0, c0], [f"{p}.Y", f"{p}.Y_h", f"{p}.Y_c"],
                           name=p, hidden_size=hidden, direction="forward")
        x = b.node("Squeeze", [y, axis1], [f"{p}.out"], name=f"{p}.squeeze")
        if source:  # h after the last read step (at padding the node's h moves on; its c does not)
            yh = b.node("GatherElements", [x, source.last], [f"{p}.Y_h_read"], name=f"{p}.Y_h_read", axis=0)
        states.append((yh, yc))
        fan_in = hidden
    return x, states


def seq2seq(
    src_vocab: int,
    tgt_vocab: int,
    embed: int,
    hidden: int,
    layers: int = 1,
    attention: str | None = "dot",
    *,
    seed: int = 0,
    max_len: int = 64,
    src_tokens: Sequence[str] | None = None,
    tgt_tokens: Sequence[str] | None = None,
    impl: str = "node",
) -> onnx.ModelProto:
    """Build an encoder-decoder ``(src [N, S], decoder_input [N, T]) -> logits [N, T, tgt_vocab]``.

    Parameters: ``encoder.embedding.weight`` [src_vocab, embed], ``encoder.lstm.W/R/B`` (ONNX
    LSTM layout; ``lstm1``, ``lstm2``, ... with several ``layers``), ``decoder.embedding.weight``,
    ``decoder.lstm.*`` (each layer starts from the matching encoder layer's final h and c),
    ``attention.weight`` [hidden, hidden] for ``attention="general"`` (score ``h_t W e_s``; "dot"
    scores ``h_t . e_s``), ``combine.weight`` [hidden, 2 hidden] and ``combine.bias``
    (``tanh(W [context; h_t] + b)``, Luong's attentional state), and ``output.weight``
    [tgt_vocab, hidden] and ``output.bias``. With ``attention=None`` the top decoder state feeds
    the output layer directly. ``max_len`` is the default decoding length kept in the metadata;
    ``src_tokens``/``tgt_tokens`` (one string per id) let the tools print text.

    ``impl="node"`` uses ONNX ``LSTM`` nodes; ``impl="unrolled"`` builds the same function from
    ``Gemm``/``MatMul``/``Sigmoid``/``Tanh``/``Mul``/``Add`` unrolled over ``max_len`` steps (ONNX
    Runtime trains that faster on the CPU); its ``src`` and ``decoder_input`` may then hold at most
    ``max_len`` tokens, and every run computes ``max_len`` steps.
    """
    src_vocab = check_positive("src_vocab", src_vocab)
    tgt_vocab = check_positive("tgt_vocab", tgt_vocab)
    if src_vocab < 4 or tgt_vocab < 4:
        raise ConfigError(f"a vocabulary needs the ids 0=PAD, 1=BOS, 2=EOS and at least one symbol (size >= 4); "
                          f"got src_vocab={src_vocab}, tgt_vocab={tgt_vocab}")
    embed = check_positive("embed", embed)
    hidden = check_positive("hidden", hidden)
    layers = check_positive("layers", layers)
    max_len = check_positive("max_len", max_len)
    if impl not in ("node", "unrolled"):
        raise ConfigError(f"impl must be one of node, unrolled; got {impl!r}")
    steps = max_len if impl == "unrolled" else None
    if attention not in ATTENTIONS:
        raise ConfigError(f"attention must be 'dot', 'general' or None; got {attention!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ConfigError(f"seed must be an integer; got {seed!r}")
    for name, tokens, size in (("src_tokens", src_tokens, src_vocab), ("tgt_tokens", tgt_tokens, tgt_vocab)):
        if tokens is not None and (len(tokens) != size or not all(isinstance(t, str) for t in tokens)):
            raise ConfigError(f"{name} must hold one string per id ({size}); got {len(tokens)} entries")

    b = GraphBuilder(int(seed))
    perm: dict[str, Any] = dict(perm=[1, 0, 2])

    # encoder: [N, S] ids -> [S, N, E] embeddings -> LSTM stack
    src_emb = b.param("encoder.embedding.weight", b.rng.standard_normal((src_vocab, embed)).astype(np.float32))
    x = b.node("Gather", [src_emb, "src"], ["encoder.embedded"], name="encoder.embedding", axis=0)
    x = b.node("Transpose", [x], ["encoder.embedded_t"], name="encoder.transpose_in", **perm)
    enc_tnh, states = _lstm_stack(b, "encoder", x, embed, hidden, layers, None, steps,
                                  TokenSteps(b, hidden, "src", "encoder.steps"))
    memory = b.node("Transpose", [enc_tnh], ["encoder.outputs"], name="encoder.transpose_out", **perm)  # [N, S, H]

    # decoder, started from the encoder's final states
    tgt_emb = b.param("decoder.embedding.weight", b.rng.standard_normal((tgt_vocab, embed)).astype(np.float32))
    y = b.node("Gather", [tgt_emb, "decoder_input"], ["decoder.embedded"], name="decoder.embedding", axis=0)
    y = b.node("Transpose", [y], ["decoder.embedded_t"], name="decoder.transpose_in", **perm)
    dec_tnh, _ = _lstm_stack(b, "decoder", y, embed, hidden, layers, states, steps)
    dec = b.node("Transpose", [dec_tnh], ["decoder.outputs"], name="decoder.transpose_out", **perm)  # [N, T, H]

    outputs = [float_input("logits", [BATCH, "T", tgt_vocab])]
    if attention is not None:
        # mask padded source positions: scores + (src == PAD) * -1e9, broadcast over T
        pad = b.constant("attention.pad_id", np.array(PAD, np.int64))
        is_pad = b.node("Equal", ["src", pad], ["attention.is_pad"], name="attention.is_pad")
        pad_f = b.node("Cast", [is_pad], ["attention.pad_f"], name="attention.pad_cast", to=onnx.TensorProto.FLOAT)
        big = b.constant("attention.mask_value", np.array(_MASK, np.float32))
        mask = b.node("Mul", [pad_f, big], ["attention.mask_ns"], name="attention.mask_scale")
        axis_t = b.constant("attention.axis_t", np.array([1], np.int64))
        mask = b.node("Unsqueeze", [mask, axis_t], ["attention.mask"], name="attention.mask")  # [N, 1, S]
        top = luong_attention(b, dec, memory, hidden, attention, mask)
        outputs.append(float_input("attention", [BATCH, "T", "S"]))
    else:
        flat_shape = b.constant("output.flat_shape", np.array([-1, hidden], np.int64))
        top = b.node("Reshape", [dec, flat_shape], ["output.flat"], name="output.flatten")
    flat_logits = b.linear("output", top, hidden, tgt_vocab, init="xavier")  # [N*T, V]
    # back to [N, T, V]: shape of decoder_input with V appended
    nt = b.node("Shape", ["decoder_input"], ["output.nt"], name="output.nt")
    v = b.constant("output.vocab", np.array([tgt_vocab], np.int64))
    shape3 = b.node("Concat", [nt, v], ["output.shape"], name="output.shape", axis=0)
    b.node("Reshape", [flat_logits, shape3], ["logits"], name="output.unflatten")

    card = ModelCard(
        task="seq2seq", builder="seq2seq", inputs=["src", "decoder_input"], output="logits",
        args={"src_vocab": src_vocab, "tgt_vocab": tgt_vocab, "embed": embed, "hidden": hidden,
              "layers": layers, "attention": attention, "seed": int(seed), "max_len": max_len, "impl": impl},
        attention_output="attention" if attention is not None else None, classes=tgt_vocab, max_len=max_len,
        special_tokens={"pad": PAD, "bos": BOS, "eos": EOS},
        src_tokens=None if src_tokens is None else list(src_tokens),
        tgt_tokens=None if tgt_tokens is None else list(tgt_tokens),
    )
    return b.model(
        "seq2seq",
        [int_input("src", [BATCH, "S"]), int_input("decoder_input", [BATCH, "T"])],
        outputs,
        card,
        doc=f"LSTM encoder-decoder {src_vocab}->{tgt_vocab}, embed {embed}, hidden {hidden} x{layers}, "
            f"attention {attention}, built by onnxforge",
    )
