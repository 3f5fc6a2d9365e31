"""Decoding with an encoder-decoder (task "seq2seq"): greedy and beam search, run through the
ordinary :class:`~onnxforge.runtime.inference.session.Session` of the one model file.

The model maps ``(src [N, S], decoder_input [N, T]) -> logits [N, T, V]`` (and ``attention``
[N, T, S]); its decoder is causal, so step ``t`` runs the model on the tokens chosen so far
(``BOS y_1 .. y_t``) and reads the last position's logits. Each step recomputes the prefix, which
costs O(L^2) in the output length L but needs no second graph, and the last run's ``attention``
rows are the attention of every emitted token. Token ids: 0 = PAD, 1 = BOS, 2 = EOS.

A captioner (task "captioning") decodes the same way from an image memory: its first input is
``image`` [N, C, H, W] instead of ``src``, and its ``attention`` [N, T, L] is over image locations.
"""

from __future__ import annotations

import numpy as np

from onnxforge.runtime.errors import ConfigError, DataError, InputError, ModelError
from onnxforge.runtime.inference.batches import in_batches
from onnxforge.runtime.modelio.card import ModelCard

__all__ = ["decode", "teacher_forcing", "prepare_seq2seq_arrays", "check_token_ids", "sequence_metrics", "strip_sequence",
           "PAD", "BOS", "EOS"]

PAD, BOS, EOS = 0, 1, 2


def teacher_forcing(tgt: np.ndarray) -> np.ndarray:
    """Decoder input for targets ``tgt`` [N, T]: ``BOS + tgt[:, :-1]`` (PAD after EOS stays PAD)."""
    tgt = np.asarray(tgt)
    if tgt.ndim != 2:
        raise InputError(f"targets 'tgt' must be [N, T] token ids; got shape {list(tgt.shape)}")
    out = np.empty(tgt.shape, np.int64)
    out[:, 0] = BOS
    out[:, 1:] = tgt[:, :-1]
    return out


def check_token_ids(name: str, ids: np.ndarray, vocab, what: str) -> None:
    """Raise :class:`DataError` when ``ids`` hold a value outside ``[0, vocab)``."""
    ids = np.asarray(ids)
    if not isinstance(vocab, int) or ids.size == 0 or ids.dtype.kind not in "iuf":
        return
    low, high = ids.min(), ids.max()
    if low < 0 or high >= vocab:
        bad = low if low < 0 else high
        raise DataError(f"'{name}' holds token id {bad:g}; the model's {what} vocabulary has ids 0 to {vocab - 1}")


def prepare_seq2seq_arrays(arrays: dict, card: ModelCard | None = None) -> dict:
    """Turn a dataset's ``src`` and ``tgt`` (or ``x`` and ``y``) into the model's inputs and targets:
    ``{"src", "decoder_input", "y"}``. Arrays that already hold ``decoder_input`` pass unchanged.
    With the model's ``card``, token ids outside its vocabularies raise :class:`DataError`."""
    out = dict(arrays)
    if "src" not in out and "x" in out:
        out["src"] = out["x"]
    args = card.args if card is not None else {}
    if "src" in out:
        check_token_ids("src", out["src"], args.get("src_vocab"), "source")
    tgt = out.get("tgt", out.get("y"))
    if tgt is not None:
        check_token_ids("tgt", tgt, args.get("tgt_vocab"), "target")
        out["y"] = tgt
        if "decoder_input" not in out:
            out["decoder_input"] = teacher_forcing(tgt)
    return out


DECODER_INPUT = "decoder_input"  # the previous tokens a decoder reads (BOS first)


def _names(session) -> tuple[str, str | None, str]:
    """``(logits, attention or None, the memory input: src or image)``: the decoder reads
    ``decoder_input``, the encoder the model's other input."""
    card = session.card
    names = [i.name for i in session.inputs]
    if DECODER_INPUT not in names or len(names) != 2:
        raise ModelError(f"decoding needs an encoder-decoder (task 'seq2seq') or a captioner (task 'captioning'); "
                         f"this model's task is {card.task!r}")
    outs = [o.name for o in session.outputs]
    logits = card.output or "logits"
    att = card.attention_output
    memory = next(n for n in names if n != DECODER_INPUT)
    return logits, (att if att in outs else None), memory


def _check_src(src) -> np.ndarray:
    src = np.asarray(src)
    if src.ndim == 1:
        src = src[None, :]
    if src.ndim != 2 or src.dtype.kind not in "iu":
        raise InputError(f"src must be [N, S] integer token ids; got {src.dtype.name} {list(src.shape)}")
    return src.astype(np.int64)


def _log_softmax(z: np.ndarray) -> np.ndarray:
    z = z.astype(np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def _check_image(image, session) -> np.ndarray:
    image = np.asarray(image)
    shape = session.inputs[0].shape
    if image.ndim == len(shape) - 1:
        image = image[None]
    if image.ndim != len(shape) or image.dtype.kind != "f":
        raise InputError(f"image must be [N, C, H, W] floats; got {image.dtype.name} {list(image.shape)}")
    return image.astype(np.float32)


def _greedy(session, src, max_len, logits_name, att_name, memory="src"):
    n = len(src)
    dec = np.full((n, 1), BOS, np.int64)
    done = np.zeros(n, bool)
    out = None
    names = [logits_name] + ([att_name] if att_name else [])
    for _ in range(max_len):
        out = session.run({memory: src, "decoder_input": dec}, names)
        last = out[logits_name][:, -1].copy()
        last[:, [PAD, BOS]] = -np.inf  # never emitted: PAD only after EOS, BOS only as the first input
        nxt = last.argmax(axis=-1).astype(np.int64)
        nxt[done] = PAD
        dec = np.concatenate([dec, nxt[:, None]], axis=1)
        done |= nxt == EOS
        if done.all():
            break
    # the last run fed BOS y_1 .. y_{L-1}: its attention rows are those of the tokens y_1 .. y_L
    return dec[:, 1:], (out[att_name] if att_name else None)


def _beam(session, src, max_len, beam, logits_name, att_name, memory="src"):
    n, k = len(src), beam
    src_k = np.repeat(src, k, axis=0)                      # [N*k, S], beams of one example adjacent
    seqs = np.full((n, k, 1), BOS, np.int64)
    scores = np.full((n, k), -np.inf)
    scores[:, 0] = 0.0                                     # one live beam at the start
    done = np.zeros((n, k), bool)
    for _ in range(max_len):
        logits = session.run({memory: src_k, "decoder_input": seqs.reshape(n * k, -1)}, [logits_name])[logits_name]
        lp = _log_softmax(logits[:, -1]).reshape(n, k, -1)  # [N, k, V]
        lp[:, :, [PAD, BOS]] = -np.inf
        v = lp.shape[-1]
        # a finished beam continues only with PAD, at no cost
        lp[done] = -np.inf
        lp[done, PAD] = 0.0
        cand = (scores[:, :, None] + lp).reshape(n, k * v)
        top = np.argsort(-cand, axis=1, kind="stable")[:, :k]
        scores = np.take_along_axis(cand, top, axis=1)
        src_beam, token = top // v, top % v
        seqs = np.concatenate([np.take_along_axis(seqs, src_beam[:, :, None], axis=1), token[:, :, None]], axis=2)
        done = np.take_along_axis(done, src_beam, axis=1) | (token == EOS)
        if done[np.isfinite(scores)].all():
            break
    best = scores.argmax(axis=1)
    dec = seqs[np.arange(n), best]                         # [N, 1 + L]
    tokens = dec[:, 1:].copy()
    attention = None
    if att_name:
        attention = session.run({memory: src, "decoder_input": dec[:, :-1]}, [att_name])[att_name]
    return tokens, attention


def decode(session, src, *, max_len: int | None = None, beam: int = 1, batch_size: int = 512):
    """Translate ``src`` [N, S] (or one sequence [S]) with the encoder-decoder in ``session``.

    Returns ``(tokens, attention)``: ``tokens`` [N, L] int64, each row the output tokens up to and
    including EOS, then PAD (a row without EOS ran out of ``max_len``); ``attention`` [N, L, S]
    (a captioner: ``src`` is the images [N, C, H, W] and S the image locations)
    (row ``t`` is what token ``t`` attended to; zero after EOS) or ``None`` for a model without
    attention. ``beam=1`` decodes greedily; ``beam=B`` keeps the B most probable prefixes (sum of
    log-probabilities, PAD and BOS never chosen) and returns the most probable one. ``max_len`` defaults to the model's.
    """
    logits_name, att_name, memory = _names(session)
    if max_len is None:
        max_len = session.card.max_len or 64
    if isinstance(max_len, bool) or not isinstance(max_len, (int, np.integer)) or max_len < 1:
        raise ConfigError(f"max_len must be a positive integer; got {max_len!r}")
    if isinstance(beam, bool) or not isinstance(beam, (int, np.integer)) or beam < 1:
        raise ConfigError(f"beam must be a positive integer; got {beam!r}")
    if memory == "src":
        src = _check_src(src)
        check_token_ids("src", src, session.card.args.get("src_vocab"), "source")
    else:
        src = _check_image(src, session)
    if len(src) == 0:
        raise InputError("src holds no sequences")

    def run(feeds: dict) -> tuple[np.ndarray, np.ndarray | None]:
        if beam == 1:
            return _greedy(session, feeds[memory], int(max_len), logits_name, att_name, memory)
        return _beam(session, feeds[memory], int(max_len), int(beam), logits_name, att_name, memory)

    parts: list[tuple[np.ndarray, np.ndarray | None]] = [p for _, p in in_batches(run, {memory: src}, batch_size,
                                                                                   desc="decode")]
    width = max(t.shape[1] for t, _ in parts)
    tokens = np.zeros((len(src), width), np.int64)
    first_att = parts[0][1]
    attention = np.zeros((len(src), width, first_att.shape[-1]), np.float32) if att_name and first_att is not None else None
    row = 0
    for t, a in parts:
        tokens[row : row + len(t), : t.shape[1]] = t
        if a is not None and attention is not None:
            attention[row : row + len(t), : a.shape[1]] = a
        row += len(t)
    if attention is not None:
        attention[tokens == PAD] = 0.0
    return tokens, attention


def strip_sequence(tokens) -> list[int]:
    """One decoded row as a list of ids, up to and including the first EOS, without PAD."""
    out = []
    for t in np.asarray(tokens).tolist():
        if t == PAD:
            break
        out.append(int(t))
        if t == EOS:
            break
    return out


def sequence_metrics(decoded: np.ndarray, tgt: np.ndarray) -> dict:
    """``exact_match``: share of rows whose decoded tokens up to EOS equal the target's;
    ``token_accuracy``: share of non-PAD target positions where the decoded token is the target's
    (decoded rows padded with PAD or cut to the target's length)."""
    tgt = np.asarray(tgt)
    n, t = tgt.shape
    dec = np.zeros((n, t), np.int64)
    w = min(t, decoded.shape[1])
    dec[:, :w] = decoded[:, :w]
    keep = tgt != PAD
    exact = np.mean([strip_sequence(d) == strip_sequence(g) for d, g in zip(decoded, tgt)]) if n else 0.0
    total = int(keep.sum())
    return {"exact_match": float(exact), "token_accuracy": float((dec[keep] == tgt[keep]).sum() / total) if total else 0.0}
