"""Training backends: what computes a training step (see :mod:`.base` for the seam).

``BACKENDS`` maps each name ``Trainer(backend=...)`` and ``train --backend`` accept to its class;
``"auto"`` takes the first available one in this order."""

from __future__ import annotations

from onnxforge.runtime.errors import ConfigError, RuntimeUnavailableError
from onnxforge.runtime.training.backends.artifacts import ArtifactsBackend
from onnxforge.runtime.training.backends.base import BackendState, TrainingBackend, TrainingSpec
from onnxforge.runtime.training.backends.onnx import OnnxBackend

__all__ = ["BACKENDS", "BACKEND_CHOICES", "backend_class", "BackendState", "TrainingBackend", "TrainingSpec"]

BACKENDS: dict[str, type] = {
    ArtifactsBackend.name: ArtifactsBackend,
    OnnxBackend.name: OnnxBackend,
}
BACKEND_CHOICES = ("auto", *BACKENDS)


def backend_class(name: str) -> type:
    """The backend class for ``name`` ("auto": the first available), or a one-line error."""
    if name == "auto":
        reasons = []
        for cls in BACKENDS.values():
            reason = cls.available()
            if reason is None:
                return cls
            reasons.append(f"{cls.name}: {reason}")
        raise RuntimeUnavailableError("no training backend can run here (" + "; ".join(reasons) + ")")
    if name not in BACKENDS:
        raise ConfigError(f"backend must be one of {', '.join(BACKEND_CHOICES)}; got {name!r}")
    cls = BACKENDS[name]
    reason = cls.available()
    if reason is not None:
        raise RuntimeUnavailableError(f"training backend {name!r} cannot run here: {reason}")
    return cls
