"""Image captioning (task "captioning", ``graphs/captioner.py``): ``image_path<TAB>caption`` files,
the teacher-forced training inputs, and exact-match metrics from greedy decoding.

A caption file holds one ``image_path<TAB>caption`` line per example; a relative path is read
from the caption file's folder, and every image goes through the card's image rule
(:func:`~onnxforge.runtime.data.images.decode_image`); captions through the card's tokenizer.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Callable

import numpy as np

from onnxforge.runtime.data import images, text
from onnxforge.runtime.data.datasets import Dataset
from onnxforge.runtime.data.tokenizers import Tokenizer
from onnxforge.runtime.errors import DataError
from onnxforge.runtime.inference.decoding import check_token_ids, decode, sequence_metrics, teacher_forcing
from onnxforge.runtime.modelio.card import ModelCard
from onnxforge.runtime.tasks.task import Task

__all__ = ["TASK", "Captioning", "IMAGE_INPUT", "read_captions", "captions_arrays", "prepare_caption_arrays", "caption_metrics",
           "caption_tokenizer"]

TASK = "captioning"
IMAGE_INPUT = "image"


def caption_tokenizer(card) -> Tokenizer:
    tok = Tokenizer.from_card(card, "tokens")
    if tok is None:
        raise DataError("the model card has no tokenizer (build the captioner with --vocab-from a captions file)")
    return tok


def read_captions(path, *, progress: bool = False) -> tuple[list[Path], list[str], Callable[[int], str]]:
    """``(image paths, captions, where)`` of an ``image_path<TAB>caption`` file."""
    paths, captions, where = text.read_columns(path, "image_path<TAB>caption", progress=progress)
    root = Path(path).parent
    return [p if p.is_absolute() else root / p for p in map(Path, paths)], captions, where


def captions_arrays(path, card, input_shape, *, progress: bool = False) -> dict:
    """``{"image" [N, C, H, W], "tgt" [N, T]}`` of a caption file for the model with ``card`` and
    image input shape ``input_shape`` (captions end with EOS; a fixed-length build pads to its
    ``max_len``)."""
    paths, captions, where = read_captions(path, progress=progress)
    spec = images.ImageSpec.for_model(card, input_shape)
    for i, p in enumerate(paths):
        if not p.is_file():
            raise DataError(f"{where(i)}: image '{p}' does not exist")
    x = images.read_images(paths, spec, progress=progress)
    width = card.max_len if (card.args or {}).get("impl") == "unrolled" else None
    tgt = caption_tokenizer(card).encode_batch(captions, width=width, eos=True, where=where)
    if width is None:
        used = np.flatnonzero(tgt.any(axis=0))
        tgt = tgt[:, : int(used[-1]) + 1]
    return {IMAGE_INPUT: x, "tgt": tgt}


def prepare_caption_arrays(arrays: dict, card: ModelCard | None = None) -> dict:
    """A dataset's ``image`` (or ``x``) and ``tgt`` (or ``y``) as the model's inputs and targets:
    ``{"image", "decoder_input" = BOS + tgt[:-1], "y" = tgt}``; target ids outside the model's
    vocabulary raise :class:`DataError`."""
    out = dict(arrays)
    if IMAGE_INPUT not in out and "x" in out:
        out[IMAGE_INPUT] = out.pop("x")
    tgt = out.get("tgt", out.get("y"))
    if tgt is not None:
        check_token_ids("tgt", tgt, card.args.get("vocab") if card is not None else None, "caption")
        out["y"] = tgt
        if "decoder_input" not in out:
            out["decoder_input"] = teacher_forcing(tgt)
    out.pop("tgt", None)
    return out


def caption_metrics(session, dataset, batch_size: int = 512) -> dict:
    """``exact_match`` and ``token_accuracy`` of greedy captions against the dataset's targets."""
    tokens, _ = decode(session, dataset.inputs[IMAGE_INPUT], max_len=int(dataset.y.shape[1]), batch_size=batch_size)
    return sequence_metrics(tokens, dataset.y)


class Captioning(Task):
    """An image in, a caption out (``graphs/captioner.py``): teacher-forced like seq2seq,
    ``exact_match`` and ``token_accuracy`` from greedy decoding; answers are the decoded captions."""
    name = TASK
    ignore_index = 0
    decodes = True
    confusion_report = False

    def run_metrics(self, session: Any, dataset: Dataset, batch_size: int = 512) -> dict:
        return caption_metrics(session, dataset, batch_size)

    def preparer(self, card: ModelCard) -> Callable[[dict], dict]:
        return functools.partial(prepare_caption_arrays, card=card)

    def text_dataset(self, path: Path, card: ModelCard, inputs: list, progress: bool) -> Dataset:
        """``image_path<TAB>caption`` lines."""
        self.tokenizers(card)
        arrays = prepare_caption_arrays(captions_arrays(path, card, inputs[0].shape, progress=progress), card)
        return Dataset({i.name: arrays[i.name] for i in inputs}, arrays["y"], str(path))

    def raw_kind(self, session: Any) -> str:
        return "image"  # a tokenizer for its captions, an image in

    def answers(self, session: Any, feeds: dict, *, beam: int = 1, max_len: int | None = None,
                batch_size: int = 256) -> list[str]:
        tok = caption_tokenizer(session.card)
        tokens, _ = decode(session, feeds[session.inputs[0].name], max_len=max_len, beam=beam, batch_size=batch_size)
        return [tok.decode(row) for row in tokens]
