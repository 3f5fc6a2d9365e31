"""The batches of an epoch, in the order a seeded RNG draws.

:class:`EpochIterator` owns the data order: a permutation per epoch from the run's RNG (whose
state the checkpoint keeps, so a resumed run draws the same orders), and the gathers that make
shuffled batches cheap. Batches are views: of the arrays in file order, or of a shuffled chunk
gathered once for several steps (a gather per step cost 4% of a small model's step). A chunk is a
whole number of batches of up to 64 MB (the whole epoch for most datasets; at least one batch):
measured on the 64-128-10 MLP against gathers of 256 KB, 1 MB and 4 MB, the whole epoch was as
fast as any, and memory stays bounded for large sets. With ``drop_last`` (a model whose batch
dimension is fixed) the last partial batch is left out, so every batch has ``batch_size`` rows.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from onnxforge.runtime.errors import DataError
from onnxforge.runtime.training.config import RunConfig
from onnxforge.runtime.training.schedules import learning_rate
from onnxforge.runtime.training.state import TrainingState

__all__ = ["EpochIterator", "CHUNK_BYTES", "check_fixed_batch", "run_epoch", "EpochSteps"]

CHUNK_BYTES = 64 << 20


def check_fixed_batch(fixed: int | None, batch_size: int, n: int) -> None:
    """A model whose batch dimension is fixed trains only with batches of that size: refused in
    one line otherwise, before any work."""
    if fixed is None or (fixed == batch_size and n >= fixed):
        return
    if fixed != batch_size:
        raise DataError(f"the model's inputs have a fixed batch of {fixed} (exported without a dynamic batch axis); "
                        f"train it with --batch-size {fixed}, or free the batch first: onnxforge convert MODEL.onnx --dynamic-batch -o OUT.onnx")
    raise DataError(f"training data: {n} examples are fewer than the model's fixed batch of {fixed}")


class EpochIterator:
    def __init__(self, inputs: list[np.ndarray], targets: np.ndarray, batch_size: int, *, shuffle: bool,
                 rng: np.random.Generator, drop_last: bool = False):
        self.inputs, self.targets = inputs, targets
        self.batch_size, self.shuffle, self.rng = batch_size, shuffle, rng
        self.n = len(targets)
        self.stop = self.n - self.n % batch_size if drop_last else self.n
        row_bytes = sum(x[:1].nbytes for x in inputs) + targets[:1].nbytes
        self.chunk = batch_size * max(1, CHUNK_BYTES // max(1, row_bytes * batch_size))

    @property
    def steps(self) -> int:
        """Steps in one epoch."""
        return -(-self.stop // self.batch_size)

    def epoch(self, skip: int = 0):
        """Yield ``(inputs, targets)`` for each step of the next epoch (drawing its order now),
        leaving out its first ``skip`` steps (a run resumed from a checkpoint made mid-epoch)."""
        n, b, chunk = self.n, self.batch_size, self.chunk
        arrays, targets = self.inputs, self.targets
        first = skip * b
        if not self.shuffle:
            for start in range(first, self.stop, b):
                at = slice(start, start + b)
                yield [x[at] for x in arrays], targets[at]
            return
        order = self.rng.permutation(n)
        for start in range(first, self.stop, b):
            if start % chunk == 0 or start == first:
                base = start - start % chunk
                idx = order[base : min(base + chunk, self.stop)]
                chunk_arrays, chunk_targets = [x[idx] for x in arrays], targets[idx]
            at = slice(start % chunk, start % chunk + b)
            yield [x[at] for x in chunk_arrays], chunk_targets[at]

    def rng_state(self) -> dict:
        return dict(self.rng.bit_generator.state)

    def set_rng_state(self, state: dict) -> None:
        self.rng.bit_generator.state = state


@dataclass
class EpochSteps:
    """What :func:`run_epoch` did: the optimizer step reached, the epoch's steps done (a resumed
    epoch's skipped ones included), their (loss sum, examples), the last rate, the time taken, and
    whether a Ctrl-C ended it early."""
    step: int
    epoch_step: int
    loss: tuple[float, int]
    lr: float
    steps: int
    seconds: float
    cpu_seconds: float
    stopped: bool

    def record(self, epoch: int) -> dict:
        loss_sum, seen = self.loss
        return {"epoch": epoch, "loss": loss_sum / max(seen, 1), "lr": self.lr,
                "steps_per_s": self.steps / self.seconds if self.seconds > 0 else None,
                "seconds": self.seconds, "cpu_seconds": self.cpu_seconds}


def run_epoch(backend: Any, batches: EpochIterator, cfg: RunConfig, state: TrainingState, total_steps: int,
              step_hooks: Sequence[Callable[[int, float], object]], flag: Sequence[bool] = (False,)) -> EpochSteps:
    """The steps of the next epoch of ``batches`` on ``backend`` from ``state`` (its step, and the
    steps of this epoch a mid-epoch checkpoint already did), ``total_steps`` in the schedule; after
    every step ``state.step`` is current, and a raised ``flag[0]`` (Ctrl-C) ends the epoch there."""
    skip, (loss_sum, seen) = state.take_within_epoch()
    constant = cfg.schedule == "constant" and not cfg.warmup_steps
    t0, cpu0 = time.perf_counter(), time.process_time()
    step = first = state.step  # locals in the loop: every attribute access costs at 10,000 steps/s
    lr = learning_rate(cfg.schedule, cfg.lr, step, total_steps, cfg.warmup_steps)
    stopped = False
    for inputs, targets in batches.epoch(skip):
        if not constant:
            lr = learning_rate(cfg.schedule, cfg.lr, step, total_steps, cfg.warmup_steps)
        loss = backend.train_step(inputs, targets, lr)
        step += 1
        for hook in step_hooks:
            hook(step, loss)
        size = len(targets)
        loss_sum += loss * size
        seen += size
        if flag[0]:
            stopped = True
            break
    state.step = step
    seconds, cpu_seconds = time.perf_counter() - t0, time.process_time() - cpu0
    return EpochSteps(step, skip + step - first, (loss_sum, seen), lr, step - first, seconds, cpu_seconds, stopped)
