"""The JSON of an inference request, parsed only when parsing it is cheap enough.

Before ``json.loads`` sees a request, one C-speed scan of its bytes measures two things:

- how deep arrays and objects nest: at most :data:`MAX_JSON_DEPTH` levels (``b"[" * 100000``
  would exhaust the stack);
- how many arrays and objects it holds: at most :func:`max_containers` for the body limit. Each
  costs Python 56-64 bytes and more, from as little as three bytes of text (``{},``): 60 MB of
  ``{},{},...`` (60 KB gzipped) would take 1.5 GB to parse. Numbers cost at most about 8 bytes per
  byte of text, so with this cap parsing a request takes at most about nine times the body limit.

Both are refused with :class:`InputError` (HTTP 400) naming the limit.
"""

from __future__ import annotations

import json
import math
import re

import numpy as np
import orjson

from onnxforge.runtime.errors import InputError

__all__ = ["load_json", "json_shape", "max_containers", "MAX_JSON_DEPTH", "MIN_CONTAINERS"]

# Nesting levels of the request's JSON. {"inputs": [{"data": ...}]} takes three, so nested data
# of rank up to 29 fits; deeper JSON (b"[" * 100000) is refused before it is parsed.
MAX_JSON_DEPTH = 32
MIN_CONTAINERS = 10_000  # arrays and objects any request may hold, whatever the body limit
CONTAINER_BYTES = 64  # the body limit allows one array or object per this many bytes


def max_containers(body_limit: int) -> int:
    """Arrays and objects a request's JSON may hold under a body limit of ``body_limit`` bytes:
    one per :data:`CONTAINER_BYTES` of it, at least :data:`MIN_CONTAINERS` (their Python objects
    then take about as much memory as the body limit)."""
    return max(MIN_CONTAINERS, body_limit // CONTAINER_BYTES)


# The depth scan looks only at the bytes that can open, close or escape: brackets, quotes,
# backslashes and what may follow a backslash in valid JSON (so an escape never pairs with the
# wrong byte once the rest is dropped). UTF-8 never uses these bytes inside a multi-byte character.
_KEEP = set(b'[]{}"\\/bfnrtu')
_DROP = bytes(b for b in range(256) if b not in _KEEP)
_STEP = np.zeros(256, np.int8)
_STEP[list(b"[{")] = 1
_STEP[list(b"]}")] = -1
_SCAN_BLOCK = 1 << 20
_UTF8_BOM = b"\xef\xbb\xbf"
_CONSTANTS = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def clip(value, limit: int = 80) -> str:
    """``value`` (a string, or the repr of anything else) cut to ``limit`` characters for a message:
    what a client sent is echoed back, but never a megabyte of it."""
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def json_shape(raw: bytes, max_depth: int = MAX_JSON_DEPTH) -> tuple[int, int]:
    """``(depth, containers)`` of the JSON text ``raw``: how deep its arrays and objects nest and
    how many there are, brackets inside strings not counted. When there are at most ``max_depth``
    brackets, both are that count (an upper bound) and nothing more is scanned. C-speed byte
    operations, then numpy over blocks of what is left: a 10 MB body costs a few milliseconds and
    no more memory than a block."""
    kept = raw.translate(None, _DROP)  # a few bytes for numeric data
    opened = kept.count(b"[") + kept.count(b"{")
    if opened <= max_depth:
        return opened, opened
    if b"\\" in kept:
        # Escapes pair from the left, so dropping "\\\\" pairs leaves each run of backslashes with
        # one or none; a "\\\"" left is then an escaped quote. The quotes that remain are real.
        kept = kept.replace(b"\\\\", b"").replace(b'\\"', b"")
    deepest, depth, in_string, containers = 0, 0, 0, 0  # carried across blocks
    for start in range(0, len(kept), _SCAN_BLOCK):
        a = np.frombuffer(kept, np.uint8, count=min(_SCAN_BLOCK, len(kept) - start), offset=start)
        outside = np.cumsum(a == ord('"'), dtype=np.int32) + in_string
        in_string = int(outside[-1] % 2)
        outside = outside % 2 == 0
        step = _STEP[a] * outside
        levels = np.cumsum(step, dtype=np.int32) + depth
        deepest, depth = max(deepest, int(levels.max())), int(levels[-1])
        containers += int(np.count_nonzero(step == 1))
    return deepest, containers


def _unique_keys(pairs: list) -> dict:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen = set()
        for key, _ in pairs:
            if key in seen:
                raise InputError(f"the request's JSON has key '{clip(key)}' twice in one object; each key may "
                                 "appear once")
            seen.add(key)
    return obj


_SLOW = object()
_KEY_END = re.compile(rb'"[ \t\r\n]*:')  # without escapes, a quote then a colon ends a key, and only a key
_DIGITS_AS_NINES = bytes.maketrans(b"012345678", b"999999999")  # then a run of 19 nines is a run of 19 digits
_LONG_RUN = b"9" * 19  # an integer that may not fit 64 bits (orjson reads it as a float)


def _keys(value, counts: list) -> None:
    """Add to ``counts`` the objects (``counts[0]``) and keys (``counts[1]``) of a parsed document,
    walking objects and the lists whose first element is an object or a list. A list of numbers is
    never walked element by element: an object hidden after its first element is not counted, which
    the caller sees as fewer objects than the text has braces (and reads the request the slow way)."""
    if type(value) is dict:
        counts[0] += 1
        counts[1] += len(value)
        for v in value.values():
            if type(v) is dict or type(v) is list:
                _keys(v, counts)
    elif value and (type(value[0]) is dict or type(value[0]) is list):
        for v in value:
            if type(v) is dict or type(v) is list:
                _keys(v, counts)


def _long_integer(raw: bytes) -> bool:
    """Whether ``raw`` holds a run of 19 digits or more that is not a fraction's (right after a
    ``.``): an integer that may not fit 64 bits. Byte translation and search at C speed (a
    regular expression took 50 us for one row of 64 numbers); a Python step only per long run."""
    nines = raw.translate(_DIGITS_AS_NINES)
    at = nines.find(_LONG_RUN)
    while at >= 0:
        if at == 0 or nines[at - 1] != 0x2E:  # not after "."
            return True
        end = at + len(_LONG_RUN)
        while end < len(nines) and nines[end] == 0x39:  # the rest of this fraction's digits
            end += 1
        at = nines.find(_LONG_RUN, end)
    return False


def _fast(raw: bytes):
    """``raw`` (holding no backslash) parsed by orjson, or :data:`_SLOW` when the general path
    must read it: anything orjson refuses (NaN and Infinity literals, numbers past a double,
    malformed JSON: the general path words the error), any run of 19 digits outside a fraction
    (an integer past 64 bits, which orjson would read as a float; the general path refuses it by
    its range), any key given twice in one object (orjson keeps the last; found by counting the
    keys in the text, which without escapes is every quote followed by a colon, against the keys
    of the parsed objects, once every object is known to be counted: the data lists of numbers are
    not walked, so their one pass is the type check that reads them as a tensor)."""
    if _long_integer(raw):
        return _SLOW
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return _SLOW
    counts = [0, 0]
    if type(doc) is dict or type(doc) is list:
        _keys(doc, counts)
    # Every object walked (as many as the text has braces: a brace inside a string only makes
    # the text's count larger) and as many keys parsed as written: no key was given twice.
    if counts[0] == raw.count(b"{") and counts[1] == len(_KEY_END.findall(raw)):
        return doc
    return _SLOW


def load_json(raw: bytes, literals: list, *, body_limit: int):
    """Parse the request's JSON: UTF-8 (a byte-order mark is skipped), at most
    :data:`MAX_JSON_DEPTH` levels and :func:`max_containers` arrays and objects for a body limit of
    ``body_limit`` bytes, no key twice in an object. NaN and Infinity are read (as Triton does) and
    noted in ``literals``, so an infinity in the data can be told from an overflow."""
    if raw.startswith(_UTF8_BOM):
        raw = raw[len(_UTF8_BOM):]
    depth, containers = json_shape(raw)
    if depth > MAX_JSON_DEPTH:
        raise InputError(f"the request's JSON nests more than {MAX_JSON_DEPTH} levels deep (the limit); send "
                         f"tensor data as a flat list with its 'shape'")
    most = max_containers(body_limit)
    if containers > most:
        raise InputError(f"the request's JSON holds {containers} arrays and objects, over the limit of {most} "
                         f"(one per {CONTAINER_BYTES} bytes of --max-body-mb): parsing it would take too much "
                         f"memory; send tensor data as a flat list with its 'shape'")
    if b"\\" not in raw:  # the common request: no escapes; orjson reads it ten times faster
        doc = _fast(raw)
        if doc is not _SLOW:
            return doc
    try:
        text = str(raw, "utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"the request's JSON is not valid UTF-8: byte 0x{raw[exc.start]:02x} at position "
                         f"{exc.start}") from None

    def constant(name):
        literals.append(name)
        return _CONSTANTS[name]

    try:
        return json.loads(text, object_pairs_hook=_unique_keys, parse_constant=constant)
    except InputError:
        raise
    except RecursionError:  # not expected past the depth scan; the limit is what to tell
        raise InputError(f"the request's JSON nests more than {MAX_JSON_DEPTH} levels deep (the limit)") from None
    except ValueError as exc:
        raise InputError(f"malformed JSON in the request: {clip(str(exc), 200)}") from None
