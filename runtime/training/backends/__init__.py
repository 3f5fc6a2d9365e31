"""Training backends: what computes a training step (see :mod:`.base` for the seam).

``BACKENDS`` maps each name ``Trainer(backend=...)`` and ``train --backend`` accept to its class;
``"auto"`` takes the first available one in the order :func:`auto_order` gives for the model.

``auto_order`` follows what was measured (the backends alternating in one process, one thread,
pinned to one core, on the shared 2-core machine; onnx / artifacts in steps/s; the measurements
and what lost are in docs/notes/training-speed.md, "Step graph and optimizers"). 2026-12-07, load
6-10, after the step graph's packed parameters became views of the flat buffer and SGD's update
folded into the weight gradient's Gemm: the LSTM node (T20, h64, batch 64, AdamW) 1.77-1.80x; the
16-32 ConvNet (AdamW) 1.06-1.09x; the 64-128-10 MLP 0.90-1.03x (AdamW) and 0.98-1.13x (SGD); the
784-1024-1024-10 MLP 0.93x (AdamW) and 0.98x (SGD) at one thread, 1.12x for both at two (the
baseline run of that day). So models with an ``LSTM`` or a ``Conv``/``ConvTranspose`` node prefer
``onnx``; the others (Gemm/MatMul models, where AdamW's eleven standard elementwise passes trail
ONNX Runtime training's one fused kernel) prefer ``artifacts`` where it is installed and fall back
to ``onnx`` (the only one on Python 3.13's onnxruntime). A model whose ops ONNX Runtime training
cannot differentiate (a Softplus, a reverse LSTM) goes to ``onnx`` first as well."""

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
_ONNX_FIRST = ("LSTM", "Conv", "ConvTranspose")  # models with these train faster on onnx (measured, see above)


def auto_order(model: ModelProto | None = None) -> list[type[TrainingBackend]]:
    """The backends ``"auto"`` tries for ``model``, faster first (see the module docstring)."""
    order = list(BACKENDS.values())
    if model is not None and (any(n.op_type in _ONNX_FIRST for n in model.graph.node) or _artifacts_cannot_train(model)):
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
