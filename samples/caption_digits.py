"""Caption strips of three handwritten digits with their words ("seven one four"): a ConvNet encodes
the 8x24 strip, an LSTM decoder writes the words while attending over the feature map's
locations (the deep-learning review's Figure 3, in small), and a picture shows where each word looked.

    python -m onnxforge.samples.caption_digits --out runs/caption_digits

Strips are drawn from the bundled digits (training strips from the training digits, held-out
strips from the test digits). Writes RUNDIR (the Trainer's run folder, with model.onnx: its card
keeps the word tokenizer and the image rule), RUNDIR/test/*.png with RUNDIR/captions_test.tsv
(``image_path<TAB>caption``: ``onnxforge eval RUNDIR --data RUNDIR/captions_test.tsv`` and
``onnxforge infer RUNDIR --input RUNDIR/test`` read them) and RUNDIR/attention.png (for a few
held-out strips: the strip, then one row per word with its attention laid over the strip in red),
and prints exact match and how often each word's attention peaks over the digit it names.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from onnxforge.graphs.captioner import captioner
from onnxforge.runtime import Trainer
from onnxforge.runtime.data.datasets import Dataset
from onnxforge.runtime.data.images import ImageSpec
from onnxforge.runtime.data.tokenizers import build_tokenizer
from onnxforge.runtime.inference.decoding import decode, sequence_metrics, teacher_forcing
from onnxforge.runtime.modelio.card import ModelCard
from onnxforge.samples import load_digits, save_png

__all__ = ["WORDS", "make_strips", "caption_of", "attention_hits", "attention_picture", "train_captioner", "main"]

WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
DIGITS = 3


def make_strips(x: np.ndarray, y: np.ndarray, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(strips [n, 1, 8, 24] float32, digits [n, 3] int64)``: three digit images side by side."""
    rng = np.random.default_rng(seed)
    pick = rng.integers(0, len(x), size=(n, DIGITS))
    images = x.reshape(-1, 1, 8, 8)[pick]                      # [n, 3, 1, 8, 8]
    strips = np.concatenate([images[:, i] for i in range(DIGITS)], axis=-1).astype(np.float32)
    return strips, y[pick].astype(np.int64)


def caption_of(digits) -> str:
    return " ".join(WORDS[int(d)] for d in digits)


def attention_hits(attention: np.ndarray, locations) -> np.ndarray:
    """For attention [N, L, h*w] over a map of ``locations = (h, w)``: the digit slot (0 .. 2) under
    each word's peak location, [N, L] (the map's columns split evenly between the digits)."""
    h, w = locations
    peak = attention.argmax(axis=-1) % w
    return peak * DIGITS // w


def attention_picture(strips: np.ndarray, words: list[list[str]], attention: np.ndarray, locations,
                      scale: int = 6) -> np.ndarray:
    """An RGB picture: for each strip its pixels, then a row per word with the word's attention
    (upsampled from the feature map) laid over the strip in red, the word written on the left."""
    h, w = locations
    height, width = strips.shape[-2:]
    label_w = 6 * 4 * 2 + 4
    rows = []
    for strip, ws, att in zip(strips, words, attention):
        grey = np.repeat(np.clip(strip[0], 0, 1)[..., None], 3, axis=-1)
        block = [np.concatenate([np.ones((height, label_w // scale + 1, 3)), grey], axis=1)]
        for t, _word in enumerate(ws):
            a = att[t].reshape(h, w)
            a = np.repeat(np.repeat(a / max(a.max(), 1e-9), height // h, axis=0), width // w, axis=1)
            tinted = grey * (1 - 0.6 * a[..., None]) + np.array([1.0, 0.0, 0.0]) * 0.6 * a[..., None]
            block.append(np.concatenate([np.ones((height, label_w // scale + 1, 3)), tinted], axis=1))
        block.append(np.ones((2, block[0].shape[1], 3)))
        rows.append(np.concatenate(block, axis=0))
    img = (np.concatenate(rows, axis=0) * 255).astype(np.uint8)
    image = Image.fromarray(np.repeat(np.repeat(img, scale, axis=0), scale, axis=1))
    draw, font = ImageDraw.Draw(image), ImageFont.load_default(size=12)
    y = 0
    for ws in words:  # the words, in black in Pillow's default font, left of their rows
        y += height * scale
        for t, word in enumerate(ws):
            draw.text((2, y + t * height * scale + height * scale / 2), word[:6], fill="black", font=font, anchor="lm")
        y += (len(ws)) * height * scale + 2 * scale
    return np.asarray(_with_title_and_scale(image, font))


def _with_title_and_scale(image, font, title: str = "where each word looks") -> Image.Image:
    """``image`` under a title and a colour scale of the red tint (attention weight 0 to 1)."""
    pad, bar_w = 66, 120
    canvas = Image.new("RGB", (max(image.width, bar_w + 80, int(font.getlength(title)) + 8), image.height + pad), "white")
    canvas.paste(image, (0, pad))
    draw = ImageDraw.Draw(canvas)
    draw.text((4, 12), title, fill="black", font=font, anchor="lm")
    weight = np.linspace(0.0, 1.0, bar_w)
    bar = np.stack([np.ones_like(weight), 1 - 0.6 * weight, 1 - 0.6 * weight], axis=-1)  # the tint over white
    canvas.paste(Image.fromarray((np.repeat(bar[None], 12, axis=0) * 255).astype(np.uint8)), (24, 30))
    draw.rectangle((24, 30, 24 + bar_w - 1, 41), outline="grey")
    draw.text((20, 36), "0", fill="black", font=font, anchor="rm")
    draw.text((28 + bar_w, 36), "1", fill="black", font=font, anchor="lm")
    draw.text((4, 50), "attention weight (red)", fill="dimgray", font=font, anchor="lm")
    return canvas


def _write_split(folder: Path, tsv: Path, strips: np.ndarray, digits: np.ndarray) -> None:
    lines = []
    for i, (strip, d) in enumerate(zip(strips, digits)):
        name = f"strip{i:04d}.png"
        save_png(folder / name, (np.clip(strip[0], 0, 1) * 255).round().astype(np.uint8))
        lines.append(f"{folder.name}/{name}\t{caption_of(d)}\n")
    tsv.write_text("".join(lines), encoding="utf-8")


def train_captioner(rundir, *, n_train: int = 4000, n_test: int = 300, epochs: int = 12, batch_size: int = 32,
                    hidden: int = 64, embed: int = 16, attention: str = "dot", lr: float = 3e-3, seed: int = 0,
                    backend: str = "auto", impl: str = "unrolled", threads=None, progress: bool = True,
                    write_files: bool = True) -> dict:
    """Make the strips, train, and return the held-out results (and the session, for decoding)."""
    rundir = Path(rundir)
    (x_train, y_train), (x_test, y_test) = load_digits("images")
    train_x, train_d = make_strips(x_train, y_train, n_train, seed)
    test_x, test_d = make_strips(x_test, y_test, n_test, seed + 1)
    tok = build_tokenizer([caption_of(d) for d in train_d], "word")
    index = tok.index
    encode = lambda digits: np.array([[index[WORDS[d]] for d in row] + [2] for row in digits], np.int64)  # noqa: E731
    train_y, test_y = encode(train_d), encode(test_d)
    model = captioner((1, 8, 8 * DIGITS), (16, 32), len(tok.tokens), embed=embed, hidden=hidden, attention=attention,
                      max_len=DIGITS + 1, seed=seed, impl=impl, tokens=list(tok.tokens), tokenizer=tok.card_values())
    spec = ImageSpec(1, 8, 8 * DIGITS).card_values()
    model = ModelCard.from_model(model).updated({"image": spec["image"],
                                                 "preprocessing": {"pixel_scale": spec["pixel_scale"]}}).apply(model)
    trainer = Trainer(model, rundir, lr=lr, seed=seed, backend=backend, threads=threads, progress=progress)
    data = Dataset({"image": train_x, "decoder_input": teacher_forcing(train_y)}, train_y, "caption strips")
    history = trainer.fit(data, epochs=epochs, batch_size=batch_size, overwrite=True)
    session = trainer.session()
    tokens, att = decode(session, test_x, max_len=DIGITS + 1)
    locations = session.card.args["locations"]
    hits = attention_hits(att[:, :DIGITS], locations) == np.arange(DIGITS)
    result = {"rundir": str(rundir), "model": str(rundir / "model.onnx"), "backend": trainer.backend_name,
              "epochs": epochs, "loss": history[-1]["loss"], **sequence_metrics(tokens, test_y),
              "attention_on_named_digit": float(hits.mean()), "test_strips": n_test}
    if write_files:
        _write_split(rundir / "test", rundir / "captions_test.tsv", test_x, test_d)
        shown = min(4, n_test)
        words = [tok.decode(row).split() for row in tokens[:shown]]
        save_png(rundir / "attention.png", attention_picture(test_x[:shown], words, att[:shown], locations))
        result["attention_png"] = str(rundir / "attention.png")
    result["session"] = session
    return result


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="runs/caption_digits", help="run folder")
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--train", type=int, default=4000, help="training strips")
    p.add_argument("--test", type=int, default=300, help="held-out strips")
    p.add_argument("--backend", default="auto", help="training backend: auto, artifacts or onnx")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    args = p.parse_args(argv)
    result = train_captioner(args.out, n_train=args.train, n_test=args.test, epochs=args.epochs, seed=args.seed,
                             backend=args.backend, progress=not args.json)
    result.pop("session")
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"exact caption on {result['exact_match']:.1%} of {args.test} held-out strips; each word's attention "
              f"peaks over the digit it names {result['attention_on_named_digit']:.1%} of the time")
        print(f"model: {result['model']}   attention: {result['attention_png']}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
