"""Training backends: what computes a training step (see :mod:`.base` for the seam).

``BACKENDS`` maps each name ``Trainer(backend=...)`` and ``train --backend`` accept to its class;
``"auto"`` takes the first available one in the order :func:`auto_order` gives for the model.

``auto_order`` follows what was measured (``stepgraph.timing.time_backends``, the backends
alternating in one process on the 2-core machine, AdamW and SGD, onnx / artifacts in steps/s):
the LSTM node (T20, h64, batch 64) 1.9-2.2x, so models with an ``LSTM`` node prefer ``onnx``; the
16-32 ConvNet 0.94-1.03x, the 784-1024-1024-10 MLP 0.92x (AdamW) and 1.30x (SGD), the 64-128-10
MLP 0.69-0.94x (AdamW) and 0.92-0.97x (SGD): other models prefer ``artifacts`` where it is
installed and fall back to ``onnx`` (the only one on Python 3.13's onnxruntime)."""

from __future__ import annotations

from onnxforge.runtime.errors import ConfigError, RuntimeUnavailableError
from onnxforge.runtime.training.backends.artifacts import ArtifactsBackend
from onnxforge.runtime.training.backends.base import BackendState, TrainingBackend, TrainingSpec
from onnxforge.runtime.training.backends.onnx import OnnxBackend

__all__ = ["BACKENDS", "BACKEND_CHOICES", "auto_order", "backend_class", "BackendState", "TrainingBackend",
           "TrainingSpec"]

BACKENDS: dict[str, type] = {
    ArtifactsBackend.name: ArtifactsBackend,
    OnnxBackend.name: OnnxBackend,
}
BACKEND_CHOICES = ("auto", *BACKENDS)


def auto_order(model=None) -> list[type]:
    """The backends ``"auto"`` tries for ``model``, faster first (see the module docstring)."""
    order = list(BACKENDS.values())
    if model is not None and any(n.op_type == "LSTM" for n in model.graph.node):
        order.sort(key=lambda cls: cls is not OnnxBackend)
    return order


def backend_class(name: str, model=None) -> type:
    """The backend class for ``name`` ("auto": the first available of :func:`auto_order` for
    ``model``), or a one-line error."""
    if name == "auto":
        reasons = []
        for cls in auto_order(model):
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
