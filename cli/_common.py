"""Parameter types and output helpers shared by the commands."""

from __future__ import annotations

import json

import click
import numpy as np

from onnxforge.runtime.ort.device import DEVICES

DEVICE = click.Choice(DEVICES, case_sensitive=False)


class IntList(click.ParamType):
    """A comma-separated list of positive integers, e.g. ``128,64``."""

    name = "INTS"

    def __init__(self, min_len: int = 1, max_len: int | None = None):
        self.min_len, self.max_len = min_len, max_len

    def convert(self, value, param, ctx):
        if isinstance(value, (list, tuple)):
            return tuple(value)
        parts = [p.strip() for p in str(value).split(",") if p.strip()]
        try:
            numbers = tuple(int(p) for p in parts)
        except ValueError:
            self.fail(f"expected comma-separated positive integers like 128,64; got {value!r}", param, ctx)
        if any(n < 1 for n in numbers):
            self.fail(f"every number must be at least 1; got {value!r}", param, ctx)
        if len(numbers) < self.min_len or (self.max_len and len(numbers) > self.max_len):
            want = f"exactly {self.min_len}" if self.min_len == self.max_len else f"at least {self.min_len}"
            self.fail(f"expected {want} numbers; got {len(numbers)} in {value!r}", param, ctx)
        return numbers


def to_jsonable(value):
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (np.floating, np.integer, np.bool_)):
        return value.item()
    if hasattr(value, "__fspath__"):
        return str(value)
    return value


def print_json(obj) -> None:
    click.echo(json.dumps(to_jsonable(obj), indent=2, sort_keys=False))


def fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)
