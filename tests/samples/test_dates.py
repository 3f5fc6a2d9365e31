"""The date generator and the date-translation sample."""

from __future__ import annotations

import datetime as dt
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from onnxforge.samples import dates, save_png
from onnxforge.samples.translate_dates import heatmap, labelled_heatmap

ROOT = Path(__file__).resolve().parents[2]

# formats strptime reads (day and month may come without their leading zero)
STRPTIME = {name: name.replace("%-", "%") for name in dates.FORMATS if "N" not in name and "(" not in name}


@pytest.fixture(scope="module")
def splits():
    return dates.make_dataset(3000, 600, seed=4)


def test_iso_targets_parse_and_match_the_written_dates(splits):
    for split in splits:
        for text, iso in zip(split["text"], split["iso"]):
            day = dt.date.fromisoformat(str(iso))  # raises on a malformed ISO date
            assert dates.FIRST <= day <= dates.LAST
            assert any(dates.render(day, f) == text for f in dates.FORMATS), text


def test_written_dates_parse_back_with_strptime(splits):
    train, _ = splits
    checked = set()
    for text, iso in zip(train["text"], train["iso"]):
        for name, fmt in STRPTIME.items():
            if dates.render(dt.date.fromisoformat(str(iso)), name) != text:
                continue
            parsed = dt.datetime.strptime(str(text), fmt).date()
            if "%y" in fmt:  # strptime's pivot is 69; the generator's is 50
                parsed = parsed.replace(year=(1900 if parsed.year % 100 >= 50 else 2000) + parsed.year % 100)
            assert parsed.isoformat() == iso, (text, fmt)
            checked.add(name)
    assert checked == set(STRPTIME)


def test_token_arrays_follow_the_convention(splits):
    train, test = splits
    src_v, tgt_v = dates.src_vocab(), dates.tgt_vocab()
    assert src_v[:3] == tgt_v[:3] == ["<pad>", "<bos>", "<eos>"]
    assert len(set(src_v)) == len(src_v) and len(set(tgt_v)) == len(tgt_v)
    for split in (train, test):
        src, tgt = split["src"], split["tgt"]
        assert src.dtype == tgt.dtype == np.int64 and tgt.shape[1] == 11
        assert src.min() >= 0 and src.max() < len(src_v) and not np.isin(src, [1, 2]).any()
        assert np.all(tgt[:, 10] == 2) and np.all(tgt[:, :10] >= 3)  # ISO dates are all 10 characters
        for row, text in zip(src, split["text"]):
            n = len(text)
            assert np.all(row[:n] >= 3) and np.all(row[n:] == 0)
            assert dates.decode_text(row, src_v) == text
        for row, iso in zip(tgt, split["iso"]):
            assert dates.decode_text(row, tgt_v) == iso


def test_test_dates_never_appear_in_training(splits):
    train, test = splits
    assert not set(train["iso"].tolist()) & set(test["iso"].tolist())
    used = {f for t, i in zip(train["text"], train["iso"]) for f in dates.FORMATS
            if dates.render(dt.date.fromisoformat(str(i)), f) == t}
    assert used == set(dates.FORMATS)


def test_examples_from_the_issue():
    day = dt.date(2026, 11, 25)
    written = {dates.render(day, f) for f in dates.FORMATS}
    assert {"25 November 2026", "11/25/26", "Wed, Nov 25 2026"} <= written


def test_npz_round_trip(tmp_path, splits):
    path = dates.save_dataset(tmp_path / "d.npz", splits[1])
    with np.load(path, allow_pickle=False) as f:
        assert f["src_vocab"].tolist() == dates.src_vocab() and f["tgt_vocab"].tolist() == dates.tgt_vocab()
        np.testing.assert_array_equal(f["tgt"], splits[1]["tgt"])


def _read_png(path):
    with Image.open(path) as im:
        assert im.format == "PNG"
        return np.asarray(im)


def test_save_png_round_trips_grey_and_rgb_and_leaves_no_temporary_file(tmp_path):
    img = heatmap(np.array([[0.0, 1.0], [0.5, 0.25]]), cell=4)
    assert img.shape == (8, 8, 3)
    np.testing.assert_array_equal(_read_png(save_png(tmp_path / "a.png", img)), img)
    grey = np.arange(12, dtype=np.uint8).reshape(3, 4)
    np.testing.assert_array_equal(_read_png(save_png(tmp_path / "sub" / "g.png", grey)), grey)
    with pytest.raises(ValueError, match="uint8"):
        save_png(tmp_path / "x.png", np.zeros((2, 2)))
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a.png", "g.png", "sub"]


def _find(img, body):
    """(top, left) where ``body`` sits inside ``img`` exactly, or None."""
    h, w = body.shape[:2]
    for top in range(img.shape[0] - h + 1):
        for left in range(img.shape[1] - w + 1):
            if (img[top, left] == body[0, 0]).all() and np.array_equal(img[top:top + h, left:left + w], body):
                return top, left
    return None


def test_labelled_heatmap_keeps_the_map_and_draws_title_labels_and_a_colour_scale():
    values = np.random.default_rng(0).random((3, 4))
    img = labelled_heatmap(values, "ab1,", ["1", "2", "EOS"], cell=14, title="attention: 'ab1,' -> '12'",
                           x_label="input", y_label="output")
    body = heatmap(values, 14)
    top, left = _find(img, body)
    assert (img[:top, left:left + body.shape[1]] < 64).any() and (img[top:top + body.shape[0], :left] < 64).any()
    assert (img[: top // 3] < 64).any()  # the title, above everything
    scale = img[top:top + body.shape[0], left + body.shape[1] + 14 + 2]  # the colour scale beside the map
    np.testing.assert_array_equal(scale[0], [8, 48, 107])     # 1: the darkest blue, as the map draws 1
    np.testing.assert_array_equal(scale[-1], [255, 255, 255])  # 0: white
    blank = labelled_heatmap(values, "    ", [" ", " ", " "], cell=14)
    top, left = _find(blank, body)
    assert blank.shape[0] == img.shape[0] and (blank[:top, :left + body.shape[1]] == 255).all()
    assert (blank[top:top + body.shape[0], :left] == 255).all()


@pytest.mark.slow
def test_translate_dates_sample_runs_and_draws_attention(tmp_path):
    """A short run of the sample (the full run, >= 97%, is the README test below: same model, same data)."""
    out = subprocess.run([sys.executable, "-m", "onnxforge.samples.translate_dates", "--out", str(tmp_path / "run"),
                          "--train", "3000", "--test", "300", "--epochs", "2", "--json"],
                         capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    import json

    result = json.loads(out.stdout)
    assert result["test_examples"] == 300 and result["exact_match"] > 0.3
    assert len(result["examples"]) == 8 and result["attention_example"]["input"]
    rows = len(result["attention_example"]["output"]) + 1
    png = _read_png(tmp_path / "run" / "attention.png")
    assert png.ndim == 3 and png.shape[0] >= rows * 14


@pytest.mark.slow
def test_readme_encoder_decoder_commands_run_as_written(tmp_path):
    import os

    text = (ROOT / "README.md").read_text()
    section = text.split("## Encoder-decoders with attention", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    outputs = []
    for line in block.replace("\\\n", " ").strip().splitlines():
        line = line.replace("python ", f"{sys.executable} ", 1) if line.startswith("python ") else line
        out = subprocess.run(line, shell=True, capture_output=True, text=True, cwd=tmp_path, env=env)
        assert out.returncode == 0, (line, out.stderr[-2000:])
        outputs.append(out.stdout)
    import json

    result = json.loads(next(o for o in outputs if o.lstrip().startswith("{")))
    assert result["exact_match"] >= 0.97 and result["examples"] == 2000
    assert re.search(r"^0: .+ -> \d{4}-\d\d-\d\d$", outputs[-1], re.M)
