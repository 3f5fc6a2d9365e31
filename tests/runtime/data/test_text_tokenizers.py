"""Char and word tokenizers (reserved ids, size limit and UNK, the refuse rule) and the text files."""

import numpy as np
import pytest

from onnxforge.runtime.data.text import corpus_arrays, labelled_arrays, pairs_arrays
from onnxforge.runtime.data.tokenizers import RESERVED, Tokenizer, build_tokenizer
from onnxforge.runtime.errors import DataError
from onnxforge.runtime.modelio.card import ModelCard


def test_char_tokenizer_round_trips_and_counts_first():
    tok = build_tokenizer(["abba", "cab"], "char")
    assert tok.tokens[:4] == RESERVED and tok.tokens[4:] == ("a", "b", "c")  # a:3, b:3 (sorted), c:1
    ids = tok.encode_batch(["cab", "a"], eos=True)
    np.testing.assert_array_equal(ids, [[6, 4, 5, 2], [4, 2, 0, 0]])
    assert [tok.decode(r) for r in ids] == ["cab", "a"]


def test_word_tokenizer_size_limit_reads_rare_words_as_unk():
    tok = build_tokenizer(["the cat", "the dog", "the cat sat"], "word", max_size=6)
    assert tok.tokens[4:] == ("the", "cat") and tok.unknown == "unk"
    assert tok.encode("the dog sat") == [4, 3, 3]
    assert tok.decode([4, 5, 2, 5]) == "the cat"


def test_a_token_outside_an_uncut_vocabulary_is_refused_naming_it():
    tok = build_tokenizer(["abc"], "char")
    with pytest.raises(DataError, match=r"'f' line 3: character 'z' at position 2 is not in the model's vocabulary"):
        tok.encode("az", "'f' line 3")


def test_the_card_alone_rebuilds_the_tokenizer():
    tok = build_tokenizer(["hello world"], "char")
    card = ModelCard.from_dict({"tokens": list(tok.tokens), "tokenizer": tok.card_values()})
    again = ModelCard.from_model(card.apply(__import__("onnx").helper.make_model(__import__("onnx").GraphProto())))
    assert Tokenizer.from_card(again) == tok


def test_pairs_labels_and_corpus_files(tmp_path):
    pairs = tmp_path / "p.tsv"
    pairs.write_text("ab\tx\n\nba\txy\n")
    tok = build_tokenizer(["ab"], "char")
    out_tok = build_tokenizer(["xy"], "char")
    arrays = pairs_arrays(pairs, tok, out_tok)
    np.testing.assert_array_equal(arrays["src"], [[4, 5], [5, 4]])
    np.testing.assert_array_equal(arrays["tgt"], [[4, 2, 0], [4, 5, 2]])
    labelled = tmp_path / "l.tsv"
    labelled.write_text("pos\tab\nneg\tb\n")
    x, y = labelled_arrays(labelled, tok, ["neg", "pos"])
    assert list(y) == [1, 0] and x.shape == (2, 2)
    corpus = tmp_path / "c.txt"
    corpus.write_text("ab\n")
    x, y = corpus_arrays(corpus, tok)
    np.testing.assert_array_equal(x, [[1, 4, 5]])
    np.testing.assert_array_equal(y, [[4, 5, 2]])


def test_a_line_without_a_tab_and_bad_utf8_are_named(tmp_path):
    tok = build_tokenizer(["ab"], "char")
    p = tmp_path / "p.tsv"
    p.write_text("a\tb\nab\n")
    with pytest.raises(DataError, match=rf"'{p}' line 2 has no tab; each line must be source<TAB>target"):
        pairs_arrays(p, tok, tok)
    p.write_bytes(b"a\tb\n\xff\tb\n")
    with pytest.raises(DataError, match=rf"'{p}' line 2 is not UTF-8 text"):
        pairs_arrays(p, tok, tok)
