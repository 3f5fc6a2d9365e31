"""PyTorch to ONNX: a ``torch.export`` program (.pt2) or a TorchScript file (.pt, .ts).

Both go through PyTorch's TorchScript-based exporter (``torch.onnx.export(..., dynamo=False)``),
which ships with torch and needs no other package. A .pt2 program is first turned back into a
module (``ExportedProgram.module()``); its symbolic sizes (``aten.sym_size``) are rewritten into
``Tensor.size`` calls so the tracer records them and the batch dimension stays dynamic. Constant
folding is off and training mode is preserved, so parameters stay initialisers with their PyTorch
names (``conv1.weight``) and BatchNormalization keeps its four tensors: the result trains.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import onnx

from onnxforge.runtime.errors import ConversionError, ModelError
from onnxforge.runtime.convert.verify import InputSpec

__all__ = ["load_program", "torchscript_specs", "export_onnx", "DEFAULT_OPSET", "MAX_TORCH_OPSET"]

DEFAULT_OPSET = 17
MAX_TORCH_OPSET = 20  # the highest opset torch 2.13's TorchScript exporter writes


def load_program(path: Path):
    """``(module, specs, sidecar)`` of a .pt2: the unlifted module, input specs from the program's
    placeholders (dynamic dims as ``None``), and onnxforge's sidecar if the file has one."""
    import torch

    from onnxforge.runtime.convert.to_torch import SIDECAR

    extra = {SIDECAR: ""}
    try:
        program = torch.export.load(str(path), extra_files=extra)
    except Exception as exc:  # noqa: BLE001
        raise ModelError(f"'{path}' is not a readable torch.export program ({type(exc).__name__}: "
                         f"{str(exc).splitlines()[0] if str(exc) else ''})") from None
    sidecar = json.loads(extra[SIDECAR]) if extra[SIDECAR] else {}
    names = list(program.graph_signature.user_inputs)
    placeholders = {n.name: n for n in program.graph.nodes if n.op == "placeholder"}
    specs = []
    for name in names:
        val = placeholders[name].meta.get("val")
        if val is None or not hasattr(val, "shape"):
            raise ConversionError(f"input '{name}' of '{path}' is not a tensor; only tensor inputs can become ONNX inputs")
        shape = [d if isinstance(d, int) else None for d in val.shape]
        specs.append(InputSpec(name, shape, torch.empty(0, dtype=val.dtype).numpy().dtype))
    if sidecar.get("inputs") and len(sidecar["inputs"]) == len(specs):
        specs = [InputSpec(n, s.shape, s.dtype, s.high) for n, s in zip(sidecar["inputs"], specs)]
    module = program.module()
    _make_sizes_traceable(module)
    return module, specs, sidecar


def _make_sizes_traceable(gm) -> None:
    """Rewrite ``aten.sym_size.int(x, d)`` into ``x.size(d)`` and the ops that consume sizes into
    their Python-level forms, so ``torch.jit.trace`` records sizes instead of freezing them."""
    import torch

    sym = set()
    for node in gm.graph.nodes:
        if node.op != "call_function":
            continue
        if node.target is torch.ops.aten.sym_size.int:
            node.op, node.target = "call_method", "size"
            sym.add(node)
            continue
        used: list = []
        torch.fx.node.map_arg((node.args, node.kwargs), used.append)
        if not any(u in sym for u in used):
            continue
        if isinstance(node.target, torch._ops.OpOverload):
            name = node.target._schema.name.split("::")[1]
            if hasattr(torch.Tensor, name):
                node.op, node.target = "call_method", name
            elif hasattr(torch, name):
                node.target = getattr(torch, name)
        else:  # operator.mul and friends on sizes give sizes
            sym.add(node)
    gm.recompile()


def parse_input_shape(text: str) -> InputSpec:
    """``1,3,32,32`` (float32) or ``int64:1,20``; used to name TorchScript example inputs."""
    dtype = "float32"
    if ":" in text:
        dtype, text = text.split(":", 1)
    try:
        shape = [int(p) for p in text.split(",") if p.strip()]
        np.dtype(dtype)
    except (ValueError, TypeError):
        raise ConversionError(f"input shape must look like 1,3,32,32 or int64:1,20; got {text!r}") from None
    if not shape or any(d < 1 for d in shape):
        raise ConversionError(f"input shape must list positive sizes; got {text!r}")
    return InputSpec("", shape, dtype)


def torchscript_specs(module, shapes: list[InputSpec]) -> list[InputSpec]:
    """Name the given shapes after the arguments of the TorchScript module's ``forward``."""
    args = [a.name for a in module.forward.schema.arguments[1:]]
    if len(shapes) != len(args):
        raise ConversionError(f"the TorchScript module's forward takes {len(args)} inputs ({', '.join(args)}); "
                              f"give one --input-shape for each (got {len(shapes)})")
    # dim 0 is the batch: dynamic in the result
    return [InputSpec(n, [None] + list(s.shape[1:]), s.dtype) for n, s in zip(args, shapes)]


def export_onnx(module, specs: list[InputSpec], example: dict, *, opset: int, output_names=None) -> onnx.ModelProto:
    """Export ``module`` with inputs named and shaped after ``specs`` (``None`` dims dynamic)."""
    import io

    import torch

    if not 7 <= opset <= MAX_TORCH_OPSET:
        raise ConversionError(f"--opset for a PyTorch export must be between 7 and {MAX_TORCH_OPSET}; got {opset}")
    args = tuple(torch.from_numpy(example[s.name]) for s in specs)
    with torch.no_grad():
        out = module(*args)
    n_out = len(out) if isinstance(out, (tuple, list)) else 1
    if output_names is None or len(output_names) != n_out:
        output_names = ["output"] if n_out == 1 else [f"output_{i}" for i in range(n_out)]
    dynamic_axes = {s.name: {i: ("N" if i == 0 else f"{s.name}_dim{i}") for i, d in enumerate(s.shape) if d is None}
                    for s in specs}
    if any(0 in axes for axes in dynamic_axes.values()):
        for name in output_names:
            dynamic_axes[name] = {0: "N"}
    buffer = io.BytesIO()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(module, args, buffer, dynamo=False, opset_version=opset,  # type: ignore[arg-type]  # a file object too
                              input_names=[s.name for s in specs], output_names=list(output_names),
                              dynamic_axes={k: v for k, v in dynamic_axes.items() if v},
                              do_constant_folding=False, training=torch.onnx.TrainingMode.PRESERVE,
                              export_params=True, keep_initializers_as_inputs=False)
    except Exception as exc:  # noqa: BLE001 - the exporter raises many kinds
        raise ConversionError(f"PyTorch's ONNX exporter failed: {str(exc).splitlines()[0]}") from None
    return onnx.load_model_from_string(buffer.getvalue())
