"""Near misses on the command line: ``onnxforge trian`` and ``train --learning-rate`` get the command
or option the user most likely meant ("Did you mean 'train'?", "Did you mean --lr?")."""

from __future__ import annotations

import difflib

__all__ = ["closest", "closest_option", "short_summary"]


def closest(word: str, choices) -> str | None:
    """The choice most like ``word`` (difflib's ratio of at least 0.6), or None."""
    found = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return found[0] if found else None


def _initials(name: str) -> str:
    words = [w for w in name.lstrip("-").replace("_", "-").split("-") if w]
    return "".join(w[0] for w in words) if len(words) > 1 else ""


def closest_option(given: str, options) -> str | None:
    """The option meant by ``given``: a near spelling (``--epoch`` -> ``--epochs``), the option whose
    name is the given words' initials (``--learning-rate`` -> ``--lr``), or the option that is one of
    its words or starts the same (``--batch`` -> ``--batch-size``)."""
    options = [o for o in options if o.startswith("--")]
    name = given.split("=", 1)[0]
    found = closest(name, options)
    if found:
        return found
    initials = _initials(name)
    for option in options:
        if initials and option[2:] == initials:
            return option
    stem = name.lstrip("-")
    starts = [o for o in options if o[2:].startswith(stem) or stem.startswith(o[2:] + "-")]
    return starts[0] if len(starts) == 1 else None


def short_summary(text: str, width: int) -> str:
    """The first sentence of a docstring's first paragraph, on one line of at most ``width`` characters."""
    first = " ".join(text.split("\n\n", 1)[0].split())
    sentence = first.split(". ", 1)[0].rstrip(".") + "."
    if len(sentence) <= width:
        return sentence
    cut = sentence[: max(width - 3, 1)].rsplit(" ", 1)[0]
    return cut.rstrip(",;:") + "..."
