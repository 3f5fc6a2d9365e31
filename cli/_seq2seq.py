"""What ``infer`` does for an encoder-decoder (task "seq2seq"): decode and print sequences."""

from __future__ import annotations

import io

import click
from typing import Any

import numpy as np

from onnxforge.cli._common import print_json
from onnxforge.runtime.errors import DataError
from onnxforge.runtime.inference.decoding import decode, strip_sequence
from onnxforge.runtime.modelio.files import atomic_write_bytes

__all__ = ["infer_seq2seq"]


def _text(ids, tokens) -> str | None:
    if not isinstance(tokens, list):
        return None
    return "".join(tokens[i] for i in strip_sequence(ids) if i >= 3 and i < len(tokens))


def infer_seq2seq(session, inputs: dict, *, output, as_json: bool, beam: int, max_len, batch_size: int,
                  max_shown: int) -> None:
    """Decode ``inputs["src"]`` (or ``inputs["x"]``) and print, save or dump the sequences."""
    src = inputs.get("src", inputs.get("x"))
    if src is None:
        raise DataError(f"an encoder-decoder needs an array 'src' (or 'x') of token ids; the input holds: "
                        f"{', '.join(inputs) or 'nothing'}")
    tokens, attention = decode(session, src, max_len=max_len, beam=beam, batch_size=batch_size)
    src_tokens, tgt_tokens = session.card.src_tokens, session.card.tgt_tokens
    result = {"tokens": tokens}
    if attention is not None:
        result["attention"] = attention
    texts = [_text(row, tgt_tokens) for row in tokens] if isinstance(tgt_tokens, list) else None
    if output:
        buf = io.BytesIO()
        np.savez(buf, **result, **({"text": np.array(texts)} if texts is not None else {}))  # type: ignore[arg-type]  # numpy's stub reads ** as its allow_pickle flag
        atomic_write_bytes(output, buf.getvalue())
    if as_json:
        doc: dict[str, Any] = {"sequences": [strip_sequence(r) for r in tokens]}
        if texts is not None:
            doc["text"] = texts
        if attention is not None:
            doc["attention"] = attention
        print_json(doc)
        return
    for i, row in enumerate(tokens[:max_shown]):
        ids = strip_sequence(row)
        if texts is not None:
            source = _text(np.asarray(src)[i], src_tokens) if isinstance(src_tokens, list) else None
            click.echo(f"{i}: {source + ' -> ' if source is not None else ''}{texts[i]}")
        else:
            click.echo(f"{i}: {' '.join(map(str, ids))}")
    if len(tokens) > max_shown:
        click.echo(f"... {len(tokens) - max_shown} more rows" + ("" if output else "; use -o OUT.npz or --json for all"))
    if output:
        click.echo(f"wrote {output}")
