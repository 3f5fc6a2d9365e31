"""A LoRA run: what a :class:`~onnxforge.runtime.training.trainer.Trainer` with ``lora=`` trains and
writes.

The trainer trains :meth:`LoRARun.training_model` (the source with adapters as initialisers) with the
adapters as its only trainable parameters: every base weight stays an initialiser of the step
model, a constant no gradient, optimizer state or checkpoint holds. Its files in the run folder:

    model.onnx              the merged model: the source's signature, W + scale * A @ B per target
    model.lora.onnx         the source with the adapter tensors as graph inputs (zero defaults:
                            without an adapter it answers as the base), for ONNX Runtime's LoRA
                            support (``RunOptions.add_active_adapter``) and ``serve --adapters``
    adapters.onnx_adapter   ``W.lora_A`` and ``W.lora_B`` (scale folded into B), ONNX Runtime's format

A source whose weights live in external data (``external``: :class:`~.external.ExternalWeights`) is
trained with those weights as step-model inputs bound to the mapped files (:attr:`LoRARun.constants`),
and both models are written with their tensors in ``NAME.onnx.data`` beside them, streamed.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from onnx import ModelProto, TensorProto

from onnxforge.runtime.adapters.adapter_file import SUFFIX, write_adapter
from onnxforge.runtime.adapters.external import ExternalWeights, write_with_data
from onnxforge.runtime.adapters.lora import LoRA, adapter_names, find_targets, initial_adapters
from onnxforge.runtime.adapters.rewrite import merged, with_adapters
from onnxforge.runtime.modelio.card import ModelCard
from onnxforge.runtime.passes import pipelines

__all__ = ["LoRARun", "LORA_MODEL", "ADAPTERS_FILE", "parameter_counts"]

LORA_MODEL = "model.lora.onnx"
ADAPTERS_FILE = "adapters" + SUFFIX


def parameter_counts(model: ModelProto) -> int:
    """Elements in the float initialisers of ``model`` (external data included, by its dims)."""
    return sum(math.prod(t.dims) for t in model.graph.initializer if t.data_type == TensorProto.FLOAT)


class LoRARun:
    """``lora`` applied to ``source``; initial adapters drawn from ``seed``."""

    def __init__(self, lora: LoRA, source: ModelProto, seed: int, external: ExternalWeights | None = None):
        self.lora = lora
        self._source = source
        self.external = external
        self.constants = dict(external.arrays) if external is not None else {}  # step inputs that never change
        self.targets = find_targets(source, lora.targets)
        self.initial = initial_adapters(self.targets, lora.rank, seed)
        self.trainable = tuple(n for t in self.targets for n in adapter_names(t.weight))
        self.trainable_parameters = int(sum(v.size for v in self.initial.values()))
        self.total_parameters = parameter_counts(source) + self.trainable_parameters

    def training_model(self, source: ModelProto) -> ModelProto:
        model = with_adapters(source, self.targets, scale=self.lora.scale, values=self.initial)
        return self.external.as_inputs(model) if self.external is not None else model

    def card(self) -> dict:
        """What the model cards record: rank, alpha, the patterns and the weights adapted."""
        return {"lora": {**self.lora.record(), "weights": [t.weight for t in self.targets],
                         "layout": "x @ M + (x @ A) @ B; A [in, rank], B [rank, out] with alpha/rank folded in"}}

    def stored(self, values: dict) -> dict[str, np.ndarray]:
        """The adapters as files hold them: A, and B with the scale folded in."""
        scale = np.float32(self.lora.scale)
        out = {}
        for t in self.targets:
            a, b = adapter_names(t.weight)
            out[a] = np.asarray(values[a], np.float32)
            out[b] = np.asarray(values[b], np.float32) * scale if scale != 1 else np.asarray(values[b], np.float32)
        return out

    def merged_model(self, source: ModelProto, values: dict) -> ModelProto:
        return merged(source, self.targets, self.stored(values))

    def write_merged(self, model: ModelProto, path: Path, values: dict) -> Path:
        """The merged model of an external-data source: ``model`` (the source's form, card and all,
        without data) written with ``W + A @ B`` computed block by block into ``path``'s data file."""
        stored = self.stored(values)
        inline = [t for t in self.targets if t.weight not in self.constants]
        model = merged(model, inline, stored) if inline else model
        transforms = {}
        for t in self.targets:
            if t.weight in self.constants:
                a, b = (stored[n] for n in adapter_names(t.weight))
                transforms[t.weight] = _merge_rows(a, b, t.transposed)
        return write_with_data(model, path, self.constants, transforms)

    def lora_model(self, source: ModelProto | None = None, trained: dict | None = None) -> ModelProto:
        source = self._source if source is None else source
        model = with_adapters(source, self.targets, as_inputs=True)
        card = ModelCard.from_model(source).updated(self.card())
        if trained is not None:
            card = card.updated({"trained": trained})
        return card.write_into(pipelines.for_export(model))

    def write(self, folder: Path, values: dict, write_model, trained: dict | None = None) -> None:
        """``model.lora.onnx`` (through ``write_model(model, path)``, the run folder's atomic writer;
        with its data file beside it for an external-data source) and ``adapters.onnx_adapter``."""
        if self.external is not None:
            write_with_data(self.lora_model(trained=trained), Path(folder) / LORA_MODEL, self.constants)
        else:
            write_model(self.lora_model(trained=trained), Path(folder) / LORA_MODEL)
        write_adapter(Path(folder) / ADAPTERS_FILE, self.stored(values))


def _merge_rows(a: np.ndarray, b: np.ndarray, transposed: bool):
    """Rows ``start:stop`` of ``W + A @ B`` in W's layout, in float32, from a block of W's rows."""
    def rows(block, start, stop):
        delta = (a @ b[:, start:stop]).T if transposed else a[start:stop] @ b
        return np.asarray(block, np.float32) + delta
    return rows
