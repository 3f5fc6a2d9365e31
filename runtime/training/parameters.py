"""Which initialisers a run trains, freezes, or carries as running state.

``--freeze PATTERN`` (glob) matches parameter names. A BatchNormalization whose scale and bias are
both frozen also has its running mean and variance *held* (bit for bit, as in a frozen layer of
Keras or a PyTorch module in eval mode); a pattern may also name the statistics themselves."""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from onnx import ModelProto, numpy_helper

from onnxforge.runtime.errors import ConfigError, NotTrainableError
from onnxforge.runtime.passes.gradient_form import state_buffers, trainable_parameters

__all__ = ["ParameterPlan"]


def _batch_norms(model: ModelProto) -> list[tuple[str, str, str, str]]:
    """(scale, bias, mean, var) of every BatchNormalization."""
    return [tuple(node.input[1:5]) for node in model.graph.node
            if node.op_type == "BatchNormalization" and node.domain in ("", "ai.onnx") and len(node.input) >= 5]


@dataclass(frozen=True)
class ParameterPlan:
    trainable: tuple[str, ...]
    frozen: tuple[str, ...]
    buffers: tuple[str, ...]   # running statistics: updated by the forward pass, never by gradients
    held: tuple[str, ...]      # the buffers of frozen batch norms: kept at their starting values

    @classmethod
    def of(cls, model: ModelProto, freeze: Sequence[str]) -> "ParameterPlan":
        candidates = trainable_parameters(model)
        buffers = [p for p in state_buffers(model) if p in candidates]
        params = [p for p in candidates if p not in buffers]
        frozen, held = set(), set()
        for pattern in freeze:
            hits = {p for p in params if fnmatch.fnmatchcase(p, pattern)}
            stats = {b for b in buffers if fnmatch.fnmatchcase(b, pattern)}
            if not hits and not stats:
                raise ConfigError(f"freeze pattern {pattern!r} matches no parameter; parameters are: "
                                  f"{', '.join(params[:12])}{' ...' if len(params) > 12 else ''}")
            frozen |= hits
            held |= stats
        for scale, bias, mean, var in _batch_norms(model):
            if scale in frozen and bias in frozen:
                held |= {mean, var} & set(buffers)
        trainable = tuple(p for p in params if p not in frozen)
        if not trainable:
            raise NotTrainableError("the model has no trainable float parameters" + (" (every one is frozen)" if params else ""))
        return cls(trainable, tuple(p for p in params if p in frozen), tuple(buffers),
                   tuple(b for b in buffers if b in held))

    def values(self, model: ModelProto, names: "set[str] | tuple[str, ...]") -> dict[str, np.ndarray]:
        """The starting values (``model``'s initialisers) of the parameters and buffers in ``names``."""
        wanted = set(names)
        return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer if t.name in wanted}

    def counts(self, model: ModelProto) -> dict[str, int]:
        """``trainable_parameters`` and ``total_parameters``: elements trained, and in ``model``'s parameters."""
        sizes = {t.name: int(np.prod(t.dims)) for t in model.graph.initializer}
        return {"trainable_parameters": sum(sizes[n] for n in self.trainable),
                "total_parameters": sum(sizes[n] for n in (*self.trainable, *self.frozen, *self.buffers))}
