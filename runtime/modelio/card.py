"""The model card: onnxforge's metadata about a model (task, builder, classes, labels, ...), typed.

It is stored in the model's ``metadata_props`` as one JSON value per key under ``onnxforge.KEY``
(any ONNX tool shows them). :meth:`ModelCard.from_model` reads it, :meth:`ModelCard.apply` writes
it into a copy of a model; nothing else in onnxforge parses or writes these keys. Class labels are
read in both forms found in files (``onnxforge.labels``, or a plain ``labels`` property holding a
JSON list, a ``{"0": "cat"}`` map or comma-separated names) and written in one: ``onnxforge.labels``
as a JSON list. A value of the wrong type (a file from a stranger or another version) reads as
absent and is kept as it was, so reading and writing a card loses nothing.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, TypeGuard

from onnx import ModelProto

from onnxforge.runtime.modelio.protos import copy_model

__all__ = ["METADATA_PREFIX", "ModelCard", "get_metadata", "set_metadata"]

METADATA_PREFIX = "onnxforge."
PLAIN_LABELS = "labels"  # the key other tools write class names under


def _text_list(value) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _whole(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _optional_str(value) -> bool:
    return value is None or isinstance(value, str)


_CHECKS = {
    "task": lambda v: isinstance(v, str), "builder": lambda v: isinstance(v, str),
    "args": lambda v: isinstance(v, dict), "inputs": _text_list, "output": lambda v: isinstance(v, str),
    "attention_output": _optional_str, "classes": lambda v: _whole(v) and v > 0, "labels": _text_list,
    "max_len": lambda v: _whole(v) and v > 0, "special_tokens": lambda v: isinstance(v, dict),
    "src_tokens": _text_list, "tgt_tokens": _text_list, "trained": lambda v: isinstance(v, dict),
    "trained_impl": lambda v: isinstance(v, str), "source": lambda v: isinstance(v, dict),
    "tokenizer": lambda v: isinstance(v, dict), "tokens": _text_list, "features": _text_list,
    "target": lambda v: isinstance(v, str), "image": lambda v: isinstance(v, dict),
    "preprocessing": lambda v: isinstance(v, dict),
}


def _labels(value) -> list[str] | None:
    """Class names from a JSON list, a ``{"0": name}`` map, or comma-separated text."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except (ValueError, RecursionError):  # nested past Python's stack: not labels either
            value = [part.strip() for part in value.split(",")]
    if isinstance(value, dict):
        try:
            value = [value[k] for k in sorted(value, key=int)]
        except (ValueError, TypeError):
            return None
    if not isinstance(value, list) or not value:
        return None
    return [str(v) for v in value]


@dataclass
class ModelCard:
    """onnxforge's metadata of one model; every field is optional (``None``: not known)."""

    task: str | None = None              # classification, regression, tagging, seq2seq
    builder: str | None = None           # the onnxforge.graphs builder that made it
    args: dict = field(default_factory=dict)  # the builder's arguments
    inputs: list[str] | None = None
    output: str | None = None            # the main output (what predict returns)
    attention_output: str | None = None
    classes: int | None = None
    labels: list[str] | None = None      # one name per class
    max_len: int | None = None           # decoding length of an encoder-decoder
    special_tokens: dict | None = None   # {"pad": 0, "bos": 1, "eos": 2}
    src_tokens: list[str] | None = None  # one string per source token id
    tgt_tokens: list[str] | None = None
    trained: dict | None = None          # epochs, steps, loss, optimizer of the run that trained it
    trained_impl: str | None = None      # the build it was trained as, when exported as another
    source: dict | None = None           # the file a conversion read
    # how raw data becomes the model's inputs (onnxforge.runtime.data: tables, images, tokenizers)
    tokenizer: dict | None = None        # {"kind": "char"|"word", "unknown": "unk"|"refuse"}
    tokens: list[str] | None = None      # one string per token id of a one-vocabulary text model
    features: list[str] | None = None    # the table columns that are the input, in order
    target: str | None = None            # the table column that holds the label
    image: dict | None = None            # {"height", "width", "channels", "resize": "refuse"|"stretch"}
    preprocessing: dict | None = None    # {"feature_scaling": {"mean", "std", "in_graph"}, "pixel_scale": 1/255}
    extra: dict = field(default_factory=dict)  # other onnxforge.* keys (and mistyped values), kept as read

    @classmethod
    def from_model(cls, model: ModelProto) -> ModelCard:
        """The card of ``model`` (an empty card for a model without onnxforge metadata)."""
        found: dict[str, Any] = {}
        plain_labels = None
        for prop in model.metadata_props:
            if prop.key.startswith(METADATA_PREFIX):
                key = prop.key[len(METADATA_PREFIX):]
                try:
                    found[key] = json.loads(prop.value)
                except (ValueError, RecursionError):  # not JSON, or nested deeper than any card value
                    found[key] = prop.value
            elif prop.key == PLAIN_LABELS:
                plain_labels = prop.value
        return cls.from_dict(found, plain_labels=plain_labels)

    @classmethod
    def from_dict(cls, values: dict, *, plain_labels: str | None = None) -> ModelCard:
        """A card from ``{key: value}`` (keys without the prefix); unknown keys go to ``extra``."""
        card, extra = cls(), {}
        for key, value in values.items():
            if key == "labels":
                value = _labels(value)
            check = _CHECKS.get(key)
            if check is not None and value is not None and check(value):
                setattr(card, key, value)
            elif check is None or values[key] is not None:
                extra[key] = values[key]
        if card.labels is None and plain_labels is not None:
            card.labels = _labels(plain_labels)
        card.extra = extra
        return card

    def to_dict(self) -> dict:
        """``{key: value}`` of every field that is set (keys without the prefix), ``extra`` included."""
        out = dict(self.extra)
        for f in dataclasses.fields(self):
            if f.name == "extra":
                continue
            value = getattr(self, f.name)
            if value is not None and not (f.name == "args" and not value):
                out[f.name] = value
        return out

    def updated(self, values: dict) -> ModelCard:
        """A new card with ``values`` (keys without the prefix) set; a value ``None`` removes the key."""
        merged = self.to_dict()
        for key, value in values.items():
            if value is None:
                merged.pop(key, None)
            else:
                merged[key] = value
        return ModelCard.from_dict(merged)

    def apply(self, model: ModelProto) -> ModelProto:
        """A copy of ``model`` whose onnxforge metadata is this card (other properties kept)."""
        out = copy_model(model)
        self.write_into(model=out)
        return out

    def write_into(self, model: ModelProto) -> ModelProto:
        """Write this card into ``model`` itself, replacing its onnxforge keys; returns ``model``.
        For builders and :func:`set_metadata`, which own the model they write."""
        keep = [p for p in model.metadata_props if not p.key.startswith(METADATA_PREFIX)]
        del model.metadata_props[:]
        model.metadata_props.extend(keep)
        for key, value in sorted(self.to_dict().items()):
            prop = model.metadata_props.add()
            prop.key, prop.value = METADATA_PREFIX + key, json.dumps(value, sort_keys=True)
        return model

    @property
    def vocabularies(self) -> dict[str, int]:
        """``{input name: vocabulary size}`` of the model's token-id inputs (an LSTM built with
        ``vocab``; an encoder-decoder's ``src`` and ``decoder_input``)."""
        args = self.args
        if "src_vocab" in args or "tgt_vocab" in args:  # an encoder-decoder
            sizes = {"src": args.get("src_vocab"), "decoder_input": args.get("tgt_vocab")}
        else:
            names = self.inputs or []
            sizes = {names[0]: args.get("vocab")} if len(names) == 1 else {}
        return {k: v for k, v in sizes.items() if _whole(v) and v > 0}


def get_metadata(model: ModelProto) -> dict:
    """onnxforge's metadata as a dict (keys without the ``onnxforge.`` prefix): the model card's
    :meth:`~ModelCard.to_dict`."""
    return ModelCard.from_model(model).to_dict()


def set_metadata(model: ModelProto, values: dict) -> ModelProto:
    """Set onnxforge metadata keys of ``model`` in place (through its card) and return ``model``."""
    return ModelCard.from_model(model).updated(values).write_into(model)
