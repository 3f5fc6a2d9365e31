"""Train an LSTM encoder-decoder with attention to turn human-written dates into ISO 8601
("Wed, Nov 25 2026" -> "2026-11-25"), report exact match on dates it never saw, and save a PNG
of one attention map (rows: output characters, columns: input characters; darker = more weight).

    python -m onnxforge.samples.translate_dates --out runs/dates

Writes RUNDIR (the Trainer's run folder, with model.onnx), RUNDIR/dates_train.tsv and
RUNDIR/dates_test.tsv (``source<TAB>target`` lines, what the model trains on: its card keeps the
character tokenizer, so ``onnxforge infer RUNDIR --text "Wed, Nov 25 2026"`` answers), the same
splits as RUNDIR/dates_train.npz and RUNDIR/dates_test.npz (``--data-format npz`` trains on those
token arrays instead) and RUNDIR/attention.png, and prints the results (``--json`` as JSON).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from onnxforge.graphs.seq2seq import seq2seq
from onnxforge.runtime import Trainer, load
from onnxforge.runtime.inference.decoding import decode, sequence_metrics
from onnxforge.runtime.modelio.card import ModelCard
from onnxforge.runtime.modelio.files import atomic_write_bytes
from onnxforge.samples import dates, save_png

__all__ = ["main", "train_translator", "attention_png", "heatmap", "labelled_heatmap"]


def _colours(values) -> np.ndarray:
    """Values in [0, 1] as RGB uint8: white (0) to dark blue (1)."""
    v = np.clip(np.asarray(values, np.float64), 0.0, 1.0)
    low, high = np.array([255, 255, 255.0]), np.array([8, 48, 107.0])
    return (low + (high - low) * v[..., None]).astype(np.uint8)


def heatmap(values: np.ndarray, cell: int = 12) -> np.ndarray:
    """A [R, C] array in [0, 1] as an RGB image, ``cell`` pixels per entry, white (0) to dark blue (1),
    with a 1-pixel grey grid."""
    img = np.repeat(np.repeat(_colours(values), cell, axis=0), cell, axis=1)
    img[::cell, :] = 200
    img[:, ::cell] = 200
    return img


def _colour_scale(height: int, width: int = 14) -> np.ndarray:
    """The heatmap's colours from 1 (top) to 0 (bottom) as an RGB bar ``height`` pixels high."""
    return np.repeat(_colours(np.linspace(1.0, 0.0, height)[:, None]), width, axis=1)


def labelled_heatmap(values: np.ndarray, columns: str, rows: list[str], cell: int = 28, *, title: str = "",
                     x_label: str = "", y_label: str = "") -> np.ndarray:
    """:func:`heatmap` with one character above each column and a label left of each row, a title,
    axis names, and a colour scale from 0 to 1 on the right, in Pillow's default font."""
    v = np.asarray(values)
    font = ImageFont.load_default(size=max(10, cell // 2))
    small = ImageFont.load_default(size=max(10, cell // 2 - 2))
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    left = int(max((measure.textlength(r, font=font) for r in rows[: v.shape[0]]), default=0)) + cell
    top = 3 * cell + cell // 2  # title, x label, column characters
    body = heatmap(v, cell)
    scale_x = left + body.shape[1] + cell
    width = max(scale_x + 14 + 4 * cell, int(measure.textlength(title, font=font)) + cell)
    image = Image.new("RGB", (width, top + body.shape[0] + cell), "white")
    image.paste(Image.fromarray(body), (left, top))
    image.paste(Image.fromarray(_colour_scale(body.shape[0])), (scale_x, top))
    draw = ImageDraw.Draw(image)
    draw.text((cell // 2, cell // 2), title, fill="black", font=font, anchor="lm")
    draw.text((left + body.shape[1] / 2, 1.5 * cell), x_label, fill="dimgray", font=small, anchor="mm")
    for j, ch in enumerate(columns[: v.shape[1]]):
        draw.text((left + j * cell + cell / 2, 2.5 * cell), ch, fill="black", font=font, anchor="mm")
    for i, label in enumerate(rows[: v.shape[0]]):
        draw.text((cell // 4, top + i * cell + cell / 2), label, fill="black", font=font, anchor="lm")
    draw.text((cell // 4, top + body.shape[0] + cell / 2), y_label, fill="dimgray", font=small, anchor="lm")
    for value, y in (("1.0", top), ("0.5", top + body.shape[0] / 2), ("0.0", top + body.shape[0])):
        draw.text((scale_x + 18, y), value, fill="black", font=small, anchor="lm")
    draw.text((scale_x, top - cell / 2), "weight", fill="dimgray", font=small, anchor="lm")
    return np.asarray(image)


def attention_png(path, attention: np.ndarray, source: str, output: str, cell: int = 28) -> Path:
    """One attention map as a labelled heatmap PNG: a row per output character and one for EOS
    (labelled "EOS"), a column per input character, titled, with a colour scale."""
    rows = list(output) + ["EOS"]
    return save_png(path, labelled_heatmap(attention[: len(rows), : len(source)], source, rows, cell,
                                           title=f"attention: {source!r} -> {output!r}",
                                           x_label="input characters (what each output step reads)",
                                           y_label="output characters, top to bottom"))


def train_translator(rundir, *, n_train: int = 10000, n_test: int = 2000, epochs: int = 6, batch_size: int = 64,
                     embed: int = 32, hidden: int = 64, attention: str = "general", lr: float = 5e-3,
                     seed: int = 0, threads: int | None = None, progress: bool = True, data_format: str = "tsv") -> dict:
    """Generate the data, train, and return the held-out results (and the session, for decoding)."""
    rundir = Path(rundir)
    train, test = dates.make_dataset(n_train, n_test, seed)
    dates.save_dataset(rundir / "dates_train.npz", train)
    dates.save_dataset(rundir / "dates_test.npz", test)
    for name, split in (("dates_train.tsv", train), ("dates_test.tsv", test)):
        atomic_write_bytes(rundir / name, "".join(f"{t}\t{i}\n" for t, i in zip(split["text"], split["iso"])).encode())
    model = seq2seq(len(dates.src_vocab()), len(dates.tgt_vocab()), embed, hidden, attention=attention, seed=seed,
                    max_len=dates.TGT_WIDTH, src_tokens=dates.src_vocab(), tgt_tokens=dates.tgt_vocab())
    # the card's vocabularies, read by character
    model = ModelCard.from_model(model).updated({"tokenizer": {"kind": "char", "unknown": "refuse"}}).apply(model)
    trainer = Trainer(model, rundir, lr=lr, schedule="cosine", seed=seed, threads=threads, progress=progress)
    data = str(rundir / "dates_train.tsv") if data_format == "tsv" else ({"src": train["src"]}, train["tgt"])
    t0 = time.perf_counter()
    trainer.fit(data, epochs=epochs, batch_size=batch_size, overwrite=True)
    seconds = time.perf_counter() - t0
    session = load(rundir / "model.onnx", device="cpu", threads=threads)
    t1 = time.perf_counter()
    tokens, att = decode(session, test["src"], max_len=dates.TGT_WIDTH)
    decode_seconds = time.perf_counter() - t1
    metrics = sequence_metrics(tokens, test["tgt"])
    return {"train_seconds": seconds, "decode_seconds": decode_seconds, "steps": trainer.step,
            "train_examples": n_train, "test_examples": n_test, **metrics,
            "session": session, "test": test, "tokens": tokens, "attention": att}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description="Train a date translator (human dates -> ISO) and draw its attention.")
    parser.add_argument("--out", default="runs/dates", help="Run folder (default: runs/dates).")
    parser.add_argument("--train", type=int, default=10000, help="Training examples (default: 10000).")
    parser.add_argument("--test", type=int, default=2000, help="Held-out examples on unseen dates (default: 2000).")
    parser.add_argument("--epochs", type=int, default=6, help="Epochs (default: 6).")
    parser.add_argument("--hidden", type=int, default=64, help="LSTM width (default: 64).")
    parser.add_argument("--attention", choices=["dot", "general"], default="general", help="Attention score (default: general).")
    parser.add_argument("--seed", type=int, default=0, help="Seed of data, weights and order (default: 0).")
    parser.add_argument("--threads", type=int, default=None, help="Intra-op threads (default: all cores).")
    parser.add_argument("--data-format", choices=["tsv", "npz"], default="tsv",
                        help="Train on the source<TAB>target file (default) or on the .npz token arrays.")
    parser.add_argument("--json", action="store_true", help="Print the results as one JSON object.")
    args = parser.parse_args(argv)
    r = train_translator(args.out, n_train=args.train, n_test=args.test, epochs=args.epochs, hidden=args.hidden,
                         attention=args.attention, seed=args.seed, threads=args.threads, progress=not args.json,
                         data_format=args.data_format)
    test, tokens, vocab_out = r["test"], r["tokens"], dates.tgt_vocab()
    # the attention map of the first held-out example written with letters and a weekday
    pick = next((i for i, t in enumerate(test["text"]) if "," in t and any(c.isalpha() for c in t)), 0)
    text, out = str(test["text"][pick]), dates.decode_text(tokens[pick], vocab_out)
    png = attention_png(Path(args.out) / "attention.png", r["attention"][pick], text, out)
    examples = [{"input": str(test["text"][i]), "output": dates.decode_text(tokens[i], vocab_out),
                 "expected": str(test["iso"][i])} for i in range(8)]
    result = {k: r[k] for k in ("exact_match", "token_accuracy", "train_seconds", "decode_seconds", "steps",
                                "train_examples", "test_examples")}
    result.update({"model": str(Path(args.out) / "model.onnx"), "attention_png": str(png),
                   "attention_example": {"input": text, "output": out}, "examples": examples})
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"held-out exact match {result['exact_match']:.4f}, token accuracy {result['token_accuracy']:.4f} "
              f"({r['test_examples']} unseen dates); trained {r['steps']} steps in {r['train_seconds']:.1f} s")
        for e in examples:
            print(f"  {e['input']:<30} -> {e['output']}{'' if e['output'] == e['expected'] else '  (expected ' + e['expected'] + ')'}")
        print(f"attention map of {text!r} -> {out!r}: {png} (rows: output characters and EOS, columns: input characters)")
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
