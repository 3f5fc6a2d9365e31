"""Exporting a zoo model with ``torch.onnx.export``: the model's inputs by name, its first output only.

Exporters: ``torchscript`` (``dynamo=False``, opset 17, a dynamic batch, no constant folding so the
weights keep PyTorch's names and values), ``torchscript-dynamic`` (every dim symbolic), ``dynamo``
(the default exporter with its optimizer) and ``dynamo-noopt`` (``optimize=False``). The module is
exported in eval mode (no dropout, batch norm in inference form: the onnx backend trains it on
batch statistics, as PyTorch does in training mode)."""

from __future__ import annotations

import io
import logging
import warnings

import onnx

from onnxforge.runtime.benchmark.workloads import torch_module

__all__ = ["EXPORTERS", "first_output", "export"]

EXPORTERS = ("dynamo", "dynamo-noopt", "torchscript", "torchscript-dynamic")


def first_output(module, names):
    """``module`` wrapped to take its inputs positionally in the order of ``names`` and return its
    first output (logits, a last hidden state) as a tensor."""
    torch = torch_module()

    class FirstOutput(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = module
            self.names = list(names)
            self.train(module.training)  # an exporter restores the wrapper's mode on everything inside

        def forward(self, *args):
            out = self.model(**dict(zip(self.names, args)))
            if isinstance(out, dict):
                return next(iter(v for v in out.values() if isinstance(v, torch.Tensor)))
            return out[0] if isinstance(out, (tuple, list)) else out

    return FirstOutput()


def export(module, inputs: dict, exporter: str = "torchscript") -> onnx.ModelProto:
    """The ONNX model of ``module`` (wrapped by :func:`first_output`) on the example ``inputs``
    (name -> numpy array); the output is named ``y``."""
    torch = torch_module()
    wrapped = first_output(module, inputs)
    args = tuple(torch.from_numpy(v) for v in inputs.values())
    names = list(inputs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if exporter in ("torchscript", "torchscript-dynamic"):
            if exporter == "torchscript":  # a dynamic batch
                axes = {**{n: {0: "N"} for n in names}, "y": {0: "N"}}
            else:  # every dim of every input and of the output symbolic (spatial sizes, sequence lengths)
                axes = {n: {i: f"{n}_{i}" for i in range(v.ndim)} for n, v in inputs.items()}
                axes["y"] = {i: f"y_{i}" for i in range(wrapped(*args).ndim)}
            buf = io.BytesIO()
            torch.onnx.export(wrapped, args, buf, dynamo=False, input_names=names, output_names=["y"], opset_version=17,
                              do_constant_folding=False, dynamic_axes=axes)
            return onnx.load_from_string(buf.getvalue())
        quiet = logging.getLogger("torch.onnx")  # its registry's lines about torchvision's absent operators
        level = quiet.level
        quiet.setLevel(logging.ERROR)
        try:
            program = torch.onnx.export(wrapped, args, dynamo=True, input_names=names, output_names=["y"],
                                        optimize=exporter == "dynamo", verbose=False)
        finally:
            quiet.setLevel(level)
        return program.model_proto
