"""``onnxforge samples DIR`` writes every file the README's examples use, from data the package
ships: the same bytes every run, nothing it did not write is replaced without --overwrite, and the
files are what the examples say they are (the README walk in tests/test_readme.py runs them)."""

from __future__ import annotations

import csv
import json

import numpy as np
from PIL import Image

from onnxforge.samples import load_digits
from onnxforge.samples.examples import example_files, number_words


def test_samples_writes_every_example_file_and_a_second_run_changes_nothing(cli_run, tmp_path):
    res = cli_run("samples", tmp_path / "data", "--json")
    assert res.exit_code == 0, res.output
    files = json.loads(res.stdout)["files"]
    names = {str(p).split("data/", 1)[1] for p in files}
    for name in ("digits_train.npz", "digits_images_test.npz", "digits_rows_train.npz", "wine_train.csv", "wine_test.csv",
                 "wine_new.csv", "corpus.txt", "held_out.txt", "captions.tsv", "pairs_train.tsv", "pairs_test.tsv",
                 "pets_old.npz", "pets_new.npz", "pets_val.npz", "seven.png"):
        assert name in names, name
    before = {p: (tmp_path / "data" / p).stat().st_mtime_ns for p in names}
    assert cli_run("samples", tmp_path / "data", "--quiet").exit_code == 0
    assert before == {p: (tmp_path / "data" / p).stat().st_mtime_ns for p in names}


def test_a_file_with_other_content_is_refused_unless_overwrite(cli_run, tmp_path):
    (tmp_path / "corpus.txt").write_text("my own notes\n")
    res = cli_run("samples", tmp_path, "--quiet")
    assert res.exit_code == 2 and "corpus.txt' exists with other content" in res.output
    assert (tmp_path / "corpus.txt").read_text() == "my own notes\n"
    assert cli_run("samples", tmp_path, "--quiet", "--overwrite").exit_code == 0
    assert (tmp_path / "corpus.txt").read_text() != "my own notes\n"


def test_the_files_hold_what_the_examples_say(tmp_path):
    files = example_files()
    assert files == example_files()  # deterministic
    (_, _), (x_test, y_test) = load_digits("images")
    seven = tmp_path / "seven.png"
    seven.write_bytes(files["seven.png"])
    with Image.open(seven) as im:
        assert im.size == (8, 8) and im.mode == "L"
    assert y_test[np.flatnonzero(y_test == 7)[0]] == 7
    per_class = [n for n in files if n.startswith("digits/train/")]
    assert len(per_class) == 1437 and {n.split("/")[2] for n in per_class} == {str(c) for c in range(10)}
    train = list(csv.DictReader(files["wine_train.csv"].decode().splitlines()))
    test = list(csv.DictReader(files["wine_test.csv"].decode().splitlines()))
    new = list(csv.DictReader(files["wine_new.csv"].decode().splitlines()))
    assert (len(train), len(test), len(new)) == (140, 38, 38)
    assert {r["cultivar"] for r in train} == {"barolo", "grignolino", "barbera"}
    assert list(new[0])[0] == "id" and "cultivar" not in new[0]
    assert [r["alcohol"] for r in new] == [r["alcohol"] for r in test]
    pairs = [line.split("\t") for line in files["pairs_train.tsv"].decode().splitlines()]
    assert all(number_words(int(n)) == words for words, n in pairs) and len(pairs) == 800
    assert number_words(312) == "three hundred and twelve" and number_words(41) == "forty-one"
    corpus = files["corpus.txt"].decode().splitlines()
    assert len(corpus) == 2000 and any(" cat " in f" {line} " for line in corpus)
    captions = files["captions.tsv"].decode().splitlines()
    assert all(f"{line.split(chr(9))[0]}" in files for line in captions)
