"""Dates written the many ways people write them, paired with their ISO 8601 form: a small
translation task for encoder-decoders ("Wed, Nov 25 2026" -> "2026-11-25").

Characters are tokens. Ids 0 = PAD, 1 = BOS, 2 = EOS are reserved; symbols start at 3, and a
vocabulary lists one string per id (the reserved ones as "<pad>", "<bos>", "<eos>"). Dates run
from 1950-01-01 to 2049-12-31; a two-digit year ``yy`` means 20yy below 50 and 19yy from 50.
Slashes are month first (US), dots are day first (European), so no string is ambiguous.

Run ``python -m onnxforge.samples.dates --out DIR`` to write ``dates_train.npz`` and
``dates_test.npz``: arrays ``src`` [N, S] and ``tgt`` [N, T] (target ends with EOS, padded with 0)
plus the vocabularies ``src_vocab`` and ``tgt_vocab``. Train and test hold disjoint calendar dates.
"""

from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path

import numpy as np

__all__ = ["FORMATS", "SPECIAL", "SRC_SYMBOLS", "TGT_SYMBOLS", "src_vocab", "tgt_vocab", "render", "encode",
           "decode_text", "make_dataset", "save_dataset", "FIRST", "LAST"]

SPECIAL = ("<pad>", "<bos>", "<eos>")
FIRST, LAST = dt.date(1950, 1, 1), dt.date(2049, 12, 31)
MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December")
DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


def _ordinal(d: int) -> str:
    suffix = "th" if 11 <= d % 100 <= 13 else {1: "st", 2: "nd", 3: "rd"}.get(d % 10, "th")
    return f"{d}{suffix}"


# each format: date -> text. Names follow strftime where one exists.
FORMATS = {
    "%d %B %Y": lambda x: f"{x.day:02d} {MONTHS[x.month - 1]} {x.year}",
    "%-d %B %Y": lambda x: f"{x.day} {MONTHS[x.month - 1]} {x.year}",
    "%-d %b %Y": lambda x: f"{x.day} {MONTHS[x.month - 1][:3]} {x.year}",
    "%B %-d, %Y": lambda x: f"{MONTHS[x.month - 1]} {x.day}, {x.year}",
    "%b %-d, %Y": lambda x: f"{MONTHS[x.month - 1][:3]} {x.day}, {x.year}",
    "%b. %-d, %Y": lambda x: f"{MONTHS[x.month - 1][:3]}. {x.day}, {x.year}",
    "%a, %b %-d %Y": lambda x: f"{DAYS[x.weekday()][:3]}, {MONTHS[x.month - 1][:3]} {x.day} {x.year}",
    "%A, %B %-d, %Y": lambda x: f"{DAYS[x.weekday()]}, {MONTHS[x.month - 1]} {x.day}, {x.year}",
    "%A %-d %B %Y": lambda x: f"{DAYS[x.weekday()]} {x.day} {MONTHS[x.month - 1]} {x.year}",
    "%m/%d/%y": lambda x: f"{x.month:02d}/{x.day:02d}/{x.year % 100:02d}",
    "%-m/%-d/%y": lambda x: f"{x.month}/{x.day}/{x.year % 100:02d}",
    "%m/%d/%Y": lambda x: f"{x.month:02d}/{x.day:02d}/{x.year}",
    "%d.%m.%Y": lambda x: f"{x.day:02d}.{x.month:02d}.{x.year}",
    "%d.%m.%y": lambda x: f"{x.day:02d}.{x.month:02d}.{x.year % 100:02d}",
    "%d-%b-%Y": lambda x: f"{x.day:02d}-{MONTHS[x.month - 1][:3]}-{x.year}",
    "%Y%m%d": lambda x: f"{x.year}{x.month:02d}{x.day:02d}",
    "%Y/%m/%d": lambda x: f"{x.year}/{x.month:02d}/{x.day:02d}",
    "%b %-d %y": lambda x: f"{MONTHS[x.month - 1][:3].lower()} {x.day} {x.year % 100:02d}",
    "the Nth of %B %Y": lambda x: f"the {_ordinal(x.day)} of {MONTHS[x.month - 1]} {x.year}",
    "%B %Nth, %Y": lambda x: f"{MONTHS[x.month - 1]} {_ordinal(x.day)}, {x.year}",
    "%d %B %Y (upper)": lambda x: f"{x.day:02d} {MONTHS[x.month - 1].upper()} {x.year}",
}


def _symbols(texts) -> tuple[str, ...]:
    return tuple(sorted(set("".join(texts))))


_ALL_NAMES = " ".join(MONTHS + DAYS)
SRC_SYMBOLS = _symbols([_ALL_NAMES, _ALL_NAMES.lower(), _ALL_NAMES.upper(), "0123456789 ,./-", "stndrdthof"])
TGT_SYMBOLS = tuple("0123456789-")


def src_vocab() -> list[str]:
    """Source vocabulary: one string per id, reserved ids first."""
    return list(SPECIAL + SRC_SYMBOLS)


def tgt_vocab() -> list[str]:
    """Target vocabulary (the characters of ``YYYY-MM-DD``): one string per id, reserved ids first."""
    return list(SPECIAL + TGT_SYMBOLS)


def render(date: dt.date, fmt: str) -> str:
    """``date`` written in the format named ``fmt`` (a key of :data:`FORMATS`)."""
    return FORMATS[fmt](date)


def encode(texts, vocab: list[str], *, width: int | None = None, eos: bool = False) -> np.ndarray:
    """Texts as an int64 [N, width] array of character ids (PAD after the text, EOS if asked)."""
    index = {s: i for i, s in enumerate(vocab)}
    rows = [[index[c] for c in t] + ([2] if eos else []) for t in texts]
    width = width or max(len(r) for r in rows)
    out = np.zeros((len(rows), width), np.int64)
    for i, r in enumerate(rows):
        if len(r) > width:
            raise ValueError(f"text {texts[i]!r} needs {len(r)} tokens; width is {width}")
        out[i, : len(r)] = r
    return out


def decode_text(ids, vocab: list[str]) -> str:
    """Token ids back to text: stops at EOS or PAD, skips BOS."""
    chars = []
    for i in np.asarray(ids).tolist():
        if i in (0, 2):
            break
        if i >= 3:
            chars.append(vocab[i])
    return "".join(chars)


SRC_WIDTH = max(len(f(dt.date(2000, 9, 27))) for f in FORMATS.values()) + 2  # longest: Wednesday, September ...
TGT_WIDTH = 11  # YYYY-MM-DD + EOS


def make_dataset(n_train: int = 10000, n_test: int = 2000, seed: int = 0):
    """``(train, test)``: dicts with ``src``, ``tgt``, ``text``, ``iso``; disjoint calendar dates.

    Every date in the range is shuffled once; test dates come first, train dates after, so no test
    date (in any format) appears in training. Each example draws one format uniformly.
    """
    rng = np.random.default_rng(seed)
    days = (LAST - FIRST).days + 1
    if n_test > days // 4:
        raise ValueError(f"n_test must be at most {days // 4} (a quarter of the {days} dates)")
    order = rng.permutation(days)
    test_days, train_days = order[:n_test], order[n_test:]
    names = list(FORMATS)
    out = []
    for n, pool in ((n_train, train_days), (n_test, test_days)):
        picked = pool[rng.permutation(len(pool))[:n]] if n <= len(pool) else rng.choice(pool, n)
        dates = [FIRST + dt.timedelta(days=int(d)) for d in picked]
        fmts = rng.integers(0, len(names), n)
        texts = [render(d, names[f]) for d, f in zip(dates, fmts)]
        iso = [d.isoformat() for d in dates]
        out.append({"src": encode(texts, src_vocab(), width=SRC_WIDTH),
                    "tgt": encode(iso, tgt_vocab(), width=TGT_WIDTH, eos=True),
                    "text": np.array(texts), "iso": np.array(iso)})
    return out[0], out[1]


def save_dataset(path, data: dict) -> Path:
    """Write one split as ``.npz``: ``src``, ``tgt``, ``text``, ``iso``, ``src_vocab``, ``tgt_vocab``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **data, src_vocab=np.array(src_vocab()), tgt_vocab=np.array(tgt_vocab()))
    return path


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="Write dates_train.npz and dates_test.npz (human dates -> ISO).")
    parser.add_argument("--out", default="data", help="Folder for the two files (default: data).")
    parser.add_argument("--train", type=int, default=10000, help="Training examples (default: 10000).")
    parser.add_argument("--test", type=int, default=2000, help="Test examples, on dates never in training (default: 2000).")
    parser.add_argument("--seed", type=int, default=0, help="Seed (default: 0).")
    args = parser.parse_args(argv)
    train, test = make_dataset(args.train, args.test, args.seed)
    for name, split in (("dates_train.npz", train), ("dates_test.npz", test)):
        p = save_dataset(Path(args.out) / name, split)
        print(f"wrote {p} ({len(split['src'])} examples)")


if __name__ == "__main__":
    main()
