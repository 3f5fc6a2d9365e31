"""Learning-rate schedules, applied by the trainer before every optimizer step."""

from __future__ import annotations

import math

__all__ = ["SCHEDULES", "learning_rate"]

SCHEDULES = ("constant", "linear", "cosine")


def learning_rate(schedule: str, base: float, step: int, total_steps: int, warmup_steps: int = 0) -> float:
    """The rate for 0-based ``step`` of ``total_steps``.

    Warm-up rises linearly from ``base / warmup_steps`` to ``base``; then "constant" keeps
    ``base``, "linear" falls to 0 at the last step, "cosine" follows half a cosine to 0.
    """
    if warmup_steps > 0 and step < warmup_steps:
        return base * (step + 1) / warmup_steps
    if schedule == "constant":
        return base
    span = max(total_steps - warmup_steps, 1)
    progress = min(max(step - warmup_steps, 0) / span, 1.0)
    if schedule == "linear":
        return base * (1.0 - progress)
    if schedule == "cosine":
        return base * 0.5 * (1.0 + math.cos(math.pi * progress))
    raise ValueError(f"unknown schedule {schedule!r}")
