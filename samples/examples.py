"""Every file the README's examples use, made from data onnxforge ships (nothing is downloaded):

    onnxforge samples data            # or: python -m onnxforge.samples.examples data

writes into ``data/``:

- ``digits_{train,test}.npz``, ``digits_images_*.npz``, ``digits_rows_*.npz``: the bundled digits;
- ``digits/{train,test}/<class>/*.png`` (the same digits as 8x8 PNGs, one folder per class) and
  ``seven.png`` (one held-out 7);
- ``wine_train.csv``/``wine_test.csv`` (the UCI wine table, 13 measurements and the ``cultivar``
  label, split 140/38 with a fixed seed) and ``wine_new.csv`` (the test bottles with an ``id``
  column and no label: ``infer`` carries the id through);
- ``corpus.txt``/``held_out.txt``: sentences of a small grammar (animals, what they do, foods,
  places), one a line, for the word-vector examples;
- ``captions.tsv`` with ``captions/*.png``: strips of three digits and their words ("seven one four");
- ``pairs_train.tsv``/``pairs_test.tsv``: number words and their digits ("forty-one<TAB>41");
- ``pets_old.npz``, ``pets_new.npz``, ``pets_val.npz``: digits 0-2 (the serving recipe's three classes).

Files are written with the umask's mode; a file that exists with other content is refused unless
``overwrite``; one that holds the same bytes is left as it is, so running it twice is harmless.
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import numpy as np

from onnxforge.samples import HERE, load_digits

__all__ = ["example_files", "write_examples", "main"]

DIGIT_FILES = [f"digits{view}_{split}.npz" for view in ("", "_images", "_rows") for split in ("train", "test")]
WINE_SPLIT_SEED = 7
NUMBER_WORDS = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
                "sixteen seventeen eighteen nineteen").split()
TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
GRAMMAR = {"animal": "cat dog fox owl hen cow".split(), "verb": "eats likes sees wants finds hides".split(),
           "food": "fish bread corn seeds milk cheese".split(), "size": "small big old young quick lazy".split(),
           "place": "garden barn field house river park".split(), "rests": "sleeps sits waits hides".split()}


def number_words(n: int) -> str:
    """``341`` -> ``"three hundred and forty-one"``."""
    if n < 20:
        return NUMBER_WORDS[n]
    if n < 100:
        return TENS[n // 10] + ("" if n % 10 == 0 else "-" + NUMBER_WORDS[n % 10])
    return NUMBER_WORDS[n // 100] + " hundred" + ("" if n % 100 == 0 else " and " + number_words(n % 100))


def _npz(**arrays) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def _png(pixels: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def _grey(x: np.ndarray) -> np.ndarray:
    return (np.clip(x, 0, 1) * 255).round().astype(np.uint8)


def _digit_images(files: dict) -> None:
    (x_train, y_train), (x_test, y_test) = load_digits("images")
    for split, x, y in (("train", x_train, y_train), ("test", x_test, y_test)):
        for i, (image, label) in enumerate(zip(x, y)):
            files[f"digits/{split}/{int(label)}/{i:04d}.png"] = _png(_grey(image[0]))
    files["seven.png"] = _png(_grey(x_test[int(np.flatnonzero(y_test == 7)[0])][0]))


def _wine(files: dict) -> None:
    lines = (HERE / "wine.csv").read_text(encoding="utf-8").splitlines()
    header, rows = lines[0], lines[1:]
    order = np.random.default_rng(WINE_SPLIT_SEED).permutation(len(rows))
    train, test = [rows[i] for i in order[:140]], [rows[i] for i in order[140:]]
    files["wine_train.csv"] = "\n".join([header, *train, ""]).encode()
    files["wine_test.csv"] = "\n".join([header, *test, ""]).encode()
    features = header.rsplit(",", 1)[0]
    files["wine_new.csv"] = "\n".join([f"id,{features}", *(f"bottle-{k + 1:03d},{row.rsplit(',', 1)[0]}"
                                                           for k, row in enumerate(test)), ""]).encode()


def _sentence(rng: np.random.Generator) -> str:
    pick = lambda kind: GRAMMAR[kind][rng.integers(len(GRAMMAR[kind]))]  # noqa: E731
    form = rng.integers(3)
    if form == 0:
        return f"the {pick('size')} {pick('animal')} {pick('verb')} the {pick('food')}"
    if form == 1:
        return f"the {pick('animal')} {pick('verb')} the {pick('food')} in the {pick('place')}"
    return f"a {pick('size')} {pick('animal')} {pick('rests')} in the {pick('place')}"


def _text(files: dict) -> None:
    rng = np.random.default_rng(19)
    lines = [_sentence(rng) for _ in range(2200)]
    files["corpus.txt"] = ("\n".join(lines[:2000]) + "\n").encode()
    files["held_out.txt"] = ("\n".join(lines[2000:]) + "\n").encode()
    order = np.random.default_rng(1).permutation(np.arange(1, 1000))
    for name, picked in (("pairs_train.tsv", order[:800]), ("pairs_test.tsv", order[800:])):
        files[name] = "".join(f"{number_words(int(n))}\t{n}\n" for n in picked).encode()


def _captions(files: dict, n: int = 600) -> None:
    from onnxforge.samples.caption_digits import caption_of, make_strips

    (x, y), _ = load_digits()
    strips, digits = make_strips(x, y, n, seed=3)
    lines = []
    for i, (strip, d) in enumerate(zip(strips, digits)):
        files[f"captions/strip{i:04d}.png"] = _png(_grey(strip[0]))
        lines.append(f"captions/strip{i:04d}.png\t{caption_of(d)}\n")
    files["captions.tsv"] = "".join(lines).encode()


def _pets(files: dict) -> None:
    (x, y), (xt, yt) = load_digits()
    keep, keep_t = y < 3, yt < 3
    x, y = x[keep], y[keep]
    half = len(y) // 2
    files["pets_old.npz"] = _npz(x=x[:half], y=y[:half])
    files["pets_new.npz"] = _npz(x=x[half:], y=y[half:])
    files["pets_val.npz"] = _npz(x=xt[keep_t], y=yt[keep_t])


def example_files() -> dict[str, bytes]:
    """``{relative path: bytes}`` of every example file (deterministic: the same bytes every time)."""
    files = {name: (HERE / name).read_bytes() for name in DIGIT_FILES}
    for part in (_digit_images, _wine, _text, _captions, _pets):
        part(files)
    return files


def write_examples(folder, *, overwrite: bool = False, progress: bool = False) -> list[Path]:
    """Write :func:`example_files` under ``folder``; returns the paths. A file there with other
    content is refused (``FileExistsError`` naming it) unless ``overwrite``."""
    folder = Path(folder)
    files = example_files()
    clashes = [name for name, data in files.items()
               if (folder / name).exists() and not ((folder / name).is_file() and (folder / name).read_bytes() == data)]
    if clashes and not overwrite:
        raise FileExistsError(f"'{folder / clashes[0]}' exists with other content"
                              + (f" (and {len(clashes) - 1} more)" if len(clashes) > 1 else ""))
    from tqdm import tqdm

    written = []
    for name, data in tqdm(files.items(), desc=f"writing {folder}", unit=" files", disable=not progress or None,
                           leave=False, file=sys.stderr):
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if not (path.is_file() and path.read_bytes() == data):
            path.write_bytes(data)  # plain open(): the umask's mode, as any tool's
        written.append(path)
    return written


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m onnxforge.samples.examples", description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", nargs="?", default="data")
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    written = write_examples(args.folder, overwrite=args.overwrite, progress=True)
    print(f"wrote {len(written)} files to {args.folder}/")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
