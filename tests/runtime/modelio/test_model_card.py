"""The model card: onnxforge's metadata read and written through one typed object."""

from __future__ import annotations

import json

from onnxforge.graphs import mlp, seq2seq
from onnxforge.runtime import load
from onnxforge.runtime.modelio import ModelCard, get_metadata, set_metadata


def _props(model) -> dict:
    return {p.key: p.value for p in model.metadata_props}


def test_builders_write_a_card_that_reads_back_typed():
    card = ModelCard.from_model(seq2seq(12, 9, 4, 8, src_tokens=[str(i) for i in range(12)]))
    assert (card.task, card.builder, card.classes, card.max_len) == ("seq2seq", "seq2seq", 9, 64)
    assert card.inputs == ["src", "decoder_input"] and card.output == "logits"
    assert card.vocabularies == {"src": 12, "decoder_input": 9}
    assert card.src_tokens[:3] == ["0", "1", "2"] and card.tgt_tokens is None
    assert ModelCard.from_model(mlp(4, [3], 2, task="regression")).classes is None


def test_apply_returns_a_new_model_and_round_trips():
    model = mlp(4, [3], 2)
    before = model.SerializeToString()
    card = ModelCard.from_model(model)
    card.labels = ["cat", "dog"]
    out = card.apply(model)
    assert model.SerializeToString() == before
    assert json.loads(_props(out)["onnxforge.labels"]) == ["cat", "dog"]
    assert ModelCard.from_model(out) == card
    assert ModelCard.from_model(card.apply(out)) == card


def _with_props(**props):
    model = mlp(4, [3], 2)
    for key, value in props.items():
        prop = model.metadata_props.add()
        prop.key, prop.value = key.replace("__", "."), value
    return model


def test_labels_read_in_both_forms_and_written_in_one():
    forms = {
        "onnxforge__labels": '["a", "b"]',
        "labels": '["a", "b"]',
    }
    for key, value in forms.items():
        assert ModelCard.from_model(_with_props(**{key: value})).labels == ["a", "b"]
    assert ModelCard.from_model(_with_props(labels="a, b")).labels == ["a", "b"]
    assert ModelCard.from_model(_with_props(labels='{"1": "b", "0": "a"}')).labels == ["a", "b"]
    assert ModelCard.from_model(_with_props(onnxforge__labels='{"1": "b", "0": "a"}')).labels == ["a", "b"]
    # onnxforge.labels wins over a plain labels property
    both = _with_props(onnxforge__labels='["x", "y"]', labels="a, b")
    assert ModelCard.from_model(both).labels == ["x", "y"]
    plain = _with_props(labels="a, b")
    written = ModelCard.from_model(plain).apply(plain)
    assert json.loads(_props(written)["onnxforge.labels"]) == ["a", "b"]
    assert _props(written)["labels"] == "a, b"  # another tool's property stays as it was
    assert load(plain).labels == ["a", "b"]


def test_mistyped_and_unknown_values_read_as_absent_and_are_kept():
    model = _with_props(onnxforge__classes='"many"', onnxforge__future='{"x": 1}', onnxforge__labels="[]")
    card = ModelCard.from_model(model)
    assert card.classes is None  # the later, mistyped value is the one read, and it is kept aside
    assert card.extra["classes"] == "many"
    assert card.extra["future"] == {"x": 1} and card.labels is None
    bad = ModelCard.from_dict({"classes": True, "max_len": -1, "task": 3})
    assert (bad.classes, bad.max_len, bad.task) == (None, None, None)
    assert bad.extra == {"classes": True, "max_len": -1, "task": 3}
    assert ModelCard.from_model(bad.apply(mlp(2, [2], 2))).extra == bad.extra


def test_set_and_get_metadata_go_through_the_card():
    model = mlp(4, [3], 2)
    assert set_metadata(model, {"labels": ["p", "q"], "classes": None}) is model
    meta = get_metadata(model)
    assert meta["labels"] == ["p", "q"] and "classes" not in meta
    assert meta == ModelCard.from_model(model).to_dict()
