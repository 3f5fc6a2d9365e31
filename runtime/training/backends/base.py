"""The backend seam: what the training loop needs from whatever computes a training step.

The :class:`~onnxforge.runtime.training.trainer.Trainer` coordinates a run (options, run folder,
batches, schedule, callbacks, checkpoints, export); a **backend** only turns batches into weight
updates. The loop talks to a backend through :class:`TrainingBackend` and nothing else, so a new
backend (e.g. ``backends/onnx.py``: a standard-ONNX training graph run by a plain
``InferenceSession``) is one class plus one line in ``BACKENDS`` (``backends/__init__.py``).

Life of a backend, as the loop drives it::

    backend = Backend(spec)            # checks only: NotTrainableError if it cannot train spec.model;
                                       # writes nothing (a refused run leaves no folder behind)
    backend.prepare(folder, threads)   # build what it needs under `folder` (RUNDIR/<backend name>/,
                                       # the backend's own; reuse what a previous start left complete;
                                       # write atomically so a kill never leaves half of it)
    # fresh run: start from spec.model's initialisers;  resume: backend.load_checkpoint(path)
    for each epoch:
        backend.seed(n)                # random ops (Dropout) of the next steps depend on n only
        for each batch:
            loss = backend.train_step(inputs, targets, lr)  # forward, backward, optimizer step
        backend.save_checkpoint(tmp, properties)            # the loop renames, digests, syncs
    backend.parameters()               # current values; the loop builds model.onnx from them

Contract, what the loop relies on:

- ``inputs`` is a list of arrays in the order of ``spec.inputs`` (the model's graph inputs that are
  not initialisers); ``targets`` are the loss's targets (int64 class ids for cross-entropy, float32
  shaped like the output for mse), already checked and cast by the data room. The batch's first
  dimension may vary (the last batch of an epoch is smaller) unless ``spec.fixed_batch`` is set.
- ``train_step`` returns the batch's mean loss as a Python float (NaN/Inf are returned, not
  raised: the loop stops the run); ``lr`` is the rate for this step (set it only when it changes,
  it may be the same for every step).
- Losses (``spec.loss``) are defined in :mod:`onnxforge.runtime.tasks.losses` (``numpy_loss`` is
  the reference a backend is tested against); the optimizers are ``"adamw"`` (betas 0.9, 0.999,
  eps 1e-8, decoupled ``spec.weight_decay``) and ``"sgd"`` (plain ``w -= lr * g``).
- ``spec.trainable`` get gradients; ``spec.frozen`` stay bit for bit; ``spec.state_buffers``
  (BatchNormalization running statistics) are updated by the forward pass in training mode,
  never by gradients. ``spec.model`` has ``training_mode`` on and plugin functions inlined.
- ``save_checkpoint(path, properties)`` writes everything needed to continue exactly (parameters,
  optimizer state such as AdamW moments, the optimizer's step) plus ``properties`` (str -> int,
  float or str) to exactly ``path``, a fresh name in a private folder; it must not rename or
  replace anything itself. ``load_checkpoint(path)`` restores it and returns the properties;
  an unreadable file is a :class:`~onnxforge.runtime.errors.CheckpointError` naming ``path``.
- ``state()`` / ``load_state(state)`` exchange a :class:`BackendState` (numpy arrays), so two
  backends can be compared, or one started from another's weights; ``optimizer`` may be empty
  where a runtime does not expose its moments.
- ``parameters()`` returns ``{name: float32 array}`` for every name in ``trainable + frozen +
  state_buffers``; the loop writes model.onnx from it (inference form, metadata), so every
  backend exports the same way.
- ``eval_step(inputs, targets)`` is the loss without updating anything (training_mode off).
- ``available()`` (a class method) returns ``None`` or a one-line reason the backend cannot run
  here; ``backend="auto"`` takes the first available one in ``auto_order(model)`` (the faster
  first for the model, see ``backends/__init__.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Protocol, runtime_checkable

import numpy as np
from onnx import ModelProto

from onnxforge.runtime.ort.device import Device

__all__ = ["TrainingSpec", "BackendState", "TrainingBackend"]


@dataclass(frozen=True)
class TrainingSpec:
    """What to train and how: everything a backend gets from the loop, once."""

    model: ModelProto           # the forward model, training_mode on, plugins inlined
    output: str                 # the output the loss reads
    inputs: tuple[str, ...]     # data inputs, in the order train_step gets them
    loss: str                   # "cross-entropy" | "mse"
    ignore_index: int | None    # cross-entropy targets equal to this count for nothing
    optimizer: str              # "adamw" | "sgd"
    weight_decay: float         # AdamW's decoupled weight decay
    trainable: tuple[str, ...]
    frozen: tuple[str, ...]
    state_buffers: tuple[str, ...]
    device: Device
    fixed_batch: int | None = None  # every batch has exactly this many examples
    constants: dict = field(default_factory=dict)  # name -> array: inputs of model that never change (memory-
    # mapped external weights of a LoRA run: bound to the step as they are, never copied)


@dataclass
class BackendState:
    parameters: dict[str, np.ndarray]
    optimizer: dict[str, np.ndarray] = field(default_factory=dict)
    step: int = 0


@runtime_checkable
class TrainingBackend(Protocol):
    name: ClassVar[str]
    spec: TrainingSpec

    def __init__(self, spec: TrainingSpec) -> None: ...

    @classmethod
    def available(cls) -> str | None: ...

    def prepare(self, folder: Path, threads: int | None) -> None: ...

    def seed(self, value: int) -> None: ...

    def train_step(self, inputs: list[np.ndarray], targets: np.ndarray, lr: float) -> float: ...

    def eval_step(self, inputs: list[np.ndarray], targets: np.ndarray) -> float: ...

    def parameters(self) -> dict[str, np.ndarray]: ...

    def state(self) -> BackendState: ...

    def load_state(self, state: BackendState) -> None: ...

    def save_checkpoint(self, path: Path, properties: dict) -> None: ...

    def load_checkpoint(self, path: Path) -> dict: ...

    def training_graph(self) -> ModelProto: ...
