"""A run's settings: checked once, recorded in the run folder, compared on ``--resume``.

:class:`RunConfig` holds the options of :class:`~onnxforge.runtime.training.trainer.Trainer` and
``fit``; ``record()`` is what metrics.json and the checkpoint keep (``model`` is the source's
fingerprint), ``disagreements()`` what a resume refuses. Choices come from the rooms that define
them: losses from :mod:`~onnxforge.runtime.tasks.losses`, schedules from :mod:`.schedules`,
backends from :mod:`.backends`.

:class:`CheckpointPolicy` says after which epochs a run writes its checkpoint, ``model.onnx`` and
``metrics.json`` (by time, ``"30s"``, or every N epochs); it changes no result, so a resume
neither records nor compares it."""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields

from onnx import ModelProto

from onnxforge.runtime.errors import ConfigError
from onnxforge.runtime.tasks.losses import LOSSES
from onnxforge.runtime.training.backends import BACKEND_CHOICES
from onnxforge.runtime.training.schedules import SCHEDULES

__all__ = ["RunConfig", "OPTIMIZERS", "LOSS_CHOICES", "fingerprint", "RESUMED_KEYS", "CheckpointPolicy",
           "CHECKPOINT_EVERY"]

OPTIMIZERS = ("adamw", "sgd")
LOSS_CHOICES = ("auto", *LOSSES)
# what a resume compares: the record keys a user sets (epochs may grow; see RunConfig.grow)
RESUMED_KEYS = ("model", "loss", "optimizer", "lr", "weight_decay", "schedule", "warmup_steps", "freeze", "seed",
                "batch_size", "shuffle", "backend", "lora")
# record keys by their option name on the command line (for messages)
OPTION_NAMES = {"batch_size": "--batch-size", "warmup_steps": "--warmup-steps", "weight_decay": "--weight-decay",
                "shuffle": "--no-shuffle", "model": "MODEL"}


def fingerprint(model: ModelProto) -> str:
    return hashlib.sha256(model.SerializeToString(deterministic=True)).hexdigest()[:16]


def _positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name} must be a positive integer; got {value!r}")
    return value


@dataclass
class RunConfig:
    loss: str = "auto"
    optimizer: str = "adamw"
    lr: float = 1e-3
    weight_decay: float = 0.01
    schedule: str = "constant"
    warmup_steps: int = 0
    freeze: Sequence[str] = field(default_factory=list)  # glob patterns (one str is one pattern); a list after checks
    seed: int = 0
    backend: str = "auto"
    lora: dict | None = None  # LoRA settings (rank, alpha, targets) of a LoRA run
    epochs: int = 10
    batch_size: int = 32
    shuffle: bool = True

    def __post_init__(self):
        if self.loss not in LOSS_CHOICES:
            raise ConfigError(f"loss must be one of {', '.join(LOSS_CHOICES)}; got {self.loss!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"optimizer must be one of {', '.join(OPTIMIZERS)}; got {self.optimizer!r}")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"schedule must be one of {', '.join(SCHEDULES)}; got {self.schedule!r}")
        if self.backend not in BACKEND_CHOICES:
            raise ConfigError(f"backend must be one of {', '.join(BACKEND_CHOICES)}; got {self.backend!r}")
        if isinstance(self.lr, bool) or not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise ConfigError(f"learning rate must be a positive number; got {self.lr!r}")
        if isinstance(self.weight_decay, bool) or not (isinstance(self.weight_decay, (int, float))
                                                       and math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise ConfigError(f"weight decay must be a number >= 0; got {self.weight_decay!r}")
        if isinstance(self.warmup_steps, bool) or not isinstance(self.warmup_steps, int) or self.warmup_steps < 0:
            raise ConfigError(f"warmup steps must be an integer >= 0; got {self.warmup_steps!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ConfigError(f"seed must be an integer; got {self.seed!r}")
        self.freeze = [self.freeze] if isinstance(self.freeze, str) else list(self.freeze or ())
        self.lr, self.weight_decay = float(self.lr), float(self.weight_decay)
        _positive_int("epochs", self.epochs)
        _positive_int("batch size", self.batch_size)

    def record(self, model: ModelProto, **facts) -> dict:
        """The run's settings as metrics.json and the checkpoint keep them (``facts``: what the
        trainer resolved, e.g. the loss and backend ``auto`` became, the task, parameter counts)."""
        doc = asdict(self)
        doc["weight_decay"] = self.weight_decay if self.optimizer == "adamw" else None
        doc["model"] = fingerprint(model)
        doc.update(facts)
        return doc

    @staticmethod
    def disagreements(saved: dict, now: dict, given: set | None = None) -> list[str]:
        """``key=saved, now key=value`` for each resumed setting that differs (``given``: only the
        keys the user set again; None: all)."""
        keys = [k for k in RESUMED_KEYS if given is None or k in given or k == "model"]
        return [k for k in keys if k in saved and saved.get(k) != now.get(k)]

    @classmethod
    def from_record(cls, saved: dict, **given) -> "RunConfig":
        """The config a run folder recorded, with ``given`` options laid over it."""
        names = {f.name for f in fields(cls)}
        values = {k: v for k, v in saved.items() if k in names and v is not None}
        values.update({k: v for k, v in given.items() if k in names})
        return cls(**values)

    def option(self, key: str) -> str:
        return OPTION_NAMES.get(key, "--" + key.replace("_", "-"))


# the default checkpoint policy: a run whose epochs take under 30 s writes its files every 30 s or so
# (and after its last epoch); a longer epoch is saved every time. A digits run (45 steps of 0.1 ms an
# epoch) wrote and synced a checkpoint, model.onnx and metrics.json 40 times and spent over 80% of its
# time on it; a kill loses at most the work since the last checkpoint (about 30 s plus one epoch)
CHECKPOINT_EVERY = "30s"
_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}
_POLICY = re.compile(r"^\s*(?:(\d+(?:\.\d+)?)\s*(s|m|h)|(\d+)\s*(?:e|epochs?)?)\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class CheckpointPolicy:
    """After which epochs a run saves: ``seconds`` since the last save (by time), or every
    ``epochs`` epochs; the last epoch of a run always. ``parse`` reads ``"30s"``, ``"5m"``,
    ``"1h"``, ``"3"``, ``"3 epochs"`` (or a number of epochs as an int)."""

    seconds: float | None = None
    epochs: int | None = None

    @classmethod
    def parse(cls, value) -> "CheckpointPolicy":
        if isinstance(value, cls):
            return value
        if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
            return cls(epochs=value)
        match = _POLICY.match(value) if isinstance(value, str) else None
        if match is None or (match.group(3) is not None and int(match.group(3)) < 1):
            raise ConfigError("checkpoint_every must be a time like '30s', '5m', '1h' or a number of epochs like "
                              f"'3' or '3 epochs'; got {value!r}")
        if match.group(3) is not None:
            return cls(epochs=int(match.group(3)))
        return cls(seconds=float(match.group(1)) * _UNITS[match.group(2).lower()])

    def due(self, epoch: int, last_epoch: int, seconds_since_save: float) -> bool:
        """Whether the run saves after ``epoch`` (of ``last_epoch``)."""
        if epoch >= last_epoch:
            return True
        if self.epochs is not None:
            return epoch % self.epochs == 0
        return self.seconds is not None and seconds_since_save >= self.seconds

    def describe(self) -> str:
        if self.epochs is not None:
            return "after every epoch" if self.epochs == 1 else f"every {self.epochs} epochs"
        return f"every {self.seconds:g} s, at an epoch's end"
