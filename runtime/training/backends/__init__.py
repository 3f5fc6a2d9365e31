"""Training backends: what computes a training step (see :mod:`.base` for the seam).

``BACKENDS`` maps each name ``Trainer(backend=...)`` and ``train --backend`` accept to its class;
``"auto"`` takes the first available one in the order :func:`auto_order` gives for the model.

``auto_order`` follows what was measured (``benchmark.timing.time_backends``, the backends
alternating in one process on the shared 2-core machine, median of 3 rounds, three runs; onnx /
artifacts in steps/s, AdamW and SGD): the LSTM node (T20, h64, batch 64, 2 threads) 3.2-6.0x, so
models with an ``LSTM`` node prefer ``onnx``; the 64-128-10 MLP 0.83-0.88x (AdamW) and 0.88-1.09x
(SGD), the 16-32 ConvNet 0.85-0.94x and 1.22-1.61x, the 784-1024-1024-10 MLP 1.19-1.66x and
0.94-1.14x: within the machine's noise of each other, the artifacts backend ahead on the small
MLP with AdamW, so other models prefer ``artifacts`` where it is installed and fall back to
``onnx`` (the only one on Python 3.13's onnxruntime). A model whose ops ONNX Runtime training cannot
differentiate (a Softplus, a reverse LSTM) goes to ``onnx`` first as well."""

from __future__ import annotations

from onnx import ModelProto

from onnxforge.runtime.errors import ConfigError, OnnxforgeError, RuntimeUnavailableError
from onnxforge.runtime.training.backends.artifacts import ArtifactsBackend
from onnxforge.runtime.training.backends.base import BackendState, TrainingBackend, TrainingSpec
from onnxforge.runtime.training.backends.onnx import OnnxBackend
from onnxforge import plugins
from onnxforge.runtime.passes.gradient_form import trainable_parameters, untrainable_ops

__all__ = ["BACKENDS", "BACKEND_CHOICES", "auto_order", "backend_class", "BackendState", "TrainingBackend",
           "TrainingSpec"]

BACKENDS: dict[str, type[TrainingBackend]] = {
    ArtifactsBackend.name: ArtifactsBackend,
    OnnxBackend.name: OnnxBackend,
}
BACKEND_CHOICES = ("auto", *BACKENDS)


def auto_order(model: ModelProto | None = None) -> list[type[TrainingBackend]]:
    """The backends ``"auto"`` tries for ``model``, faster first (see the module docstring)."""
    order = list(BACKENDS.values())
    if model is not None and (any(n.op_type == "LSTM" for n in model.graph.node) or _artifacts_cannot_train(model)):
        order.sort(key=lambda cls: cls is not OnnxBackend)
    return order


def _artifacts_cannot_train(model) -> bool:
    """Whether ONNX Runtime training's gradient builder refuses ``model`` (e.g. a Softplus), which the
    ``onnx`` backend may still train: ``auto`` then goes to ``onnx`` instead of refusing."""
    try:
        prepared = plugins.prepare_training(model)
    except OnnxforgeError:
        return False
    return bool(untrainable_ops(prepared, trainable_parameters(prepared)))


def backend_class(name: str, model: ModelProto | None = None) -> type[TrainingBackend]:
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
