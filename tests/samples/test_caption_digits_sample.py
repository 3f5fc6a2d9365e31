"""The caption_digits sample: strips built from the digits, the attention-peak rule, and a short run
of its command line writing the model, the held-out PNGs with their caption file, and the picture."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image

from onnxforge.samples import caption_digits, load_digits


def test_strips_are_three_digits_side_by_side():
    (x, y), _ = load_digits("images")
    strips, digits = caption_digits.make_strips(x, y, 5, seed=2)
    assert strips.shape == (5, 1, 8, 24) and digits.shape == (5, 3)
    for strip, row in zip(strips, digits):
        for slot, d in enumerate(row):
            part = strip[:, :, 8 * slot : 8 * slot + 8]
            assert any(np.array_equal(part, img) for img in x[y == d])
    assert caption_digits.caption_of([7, 1, 4]) == "seven one four"


def test_attention_peak_names_the_slot_under_it():
    att = np.zeros((1, 3, 12))  # a 2x6 map: columns 0-1 slot 0, 2-3 slot 1, 4-5 slot 2
    att[0, 0, 7] = att[0, 1, 3] = att[0, 2, 11] = 1.0  # (row 1, col 1), (row 0, col 3), (row 1, col 5)
    np.testing.assert_array_equal(caption_digits.attention_hits(att, (2, 6)), [[0, 1, 2]])


def test_main_writes_the_run_the_strips_and_the_picture(tmp_path, capsys):
    assert caption_digits.main(["--out", str(tmp_path), "--epochs", "1", "--train", "200", "--test", "6", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert 0.0 <= result["exact_match"] <= 1.0 and (tmp_path / "model.onnx").is_file()
    lines = (tmp_path / "captions_test.tsv").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 6
    path, caption = lines[0].split("\t")
    with Image.open(tmp_path / path) as im:
        assert im.size == (24, 8)
    assert len(caption.split()) == 3 and set(caption.split()) <= set(caption_digits.WORDS)
    with Image.open(result["attention_png"]) as im:
        assert im.mode == "RGB" and im.size[1] > im.size[0]
