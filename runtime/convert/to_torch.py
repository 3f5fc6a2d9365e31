"""ONNX to PyTorch: an interpreter module over the graph, with the model's weights as
``nn.Parameter``s named after the initialisers, exported as a ``torch.export`` program (.pt2).

``fc1.weight`` becomes parameter ``weight`` of submodule ``fc1``, so ``state_dict()`` keys are the
initialiser names. Float initialisers of rank >= 1 are parameters, except the running mean and
variance of ``BatchNormalization``, which are buffers (as in ``nn.BatchNorm``); other constants stay
constants. The module computes inference (Dropout is the identity).
"""

from __future__ import annotations

import json
import keyword
import re

import numpy as np
import onnx
from onnx import ModelProto, numpy_helper

from onnxforge.runtime.errors import ConversionError
from onnxforge.runtime.convert.verify import random_feeds
from onnxforge.runtime.passes.fold import constant_value

__all__ = ["SUPPORTED_OPS", "OnnxModule", "check_supported", "to_torch_module", "export_program", "SIDECAR"]

SIDECAR = "onnxforge.json"  # extra file inside the .pt2: input/output names and ONNX metadata


def _ops():
    from onnxforge.runtime.convert._torch_ops import OPS

    return OPS


SUPPORTED_OPS = frozenset({
    "Abs", "Add", "AveragePool", "BatchNormalization", "Cast", "Clip", "Concat", "Constant", "ConstantOfShape",
    "Conv", "ConvTranspose", "Div", "Dropout", "Elu", "Equal", "Erf", "Exp", "Expand", "Flatten", "Gather",
    "GatherElements", "Gemm", "GlobalAveragePool", "Greater", "HardSigmoid", "Identity", "InstanceNormalization",
    "LSTM", "LayerNormalization", "LeakyRelu", "Less", "Log", "LogSoftmax", "MatMul", "Max", "MaxPool", "Min",
    "Mul", "Neg", "Not", "PRelu", "Pad", "Pow", "Range", "Reciprocal", "ReduceMax", "ReduceMean", "ReduceMin",
    "ReduceSum", "Relu", "Reshape", "Selu", "Shape", "Sigmoid", "Slice", "Softmax", "Softplus", "Split", "Sqrt",
    "Squeeze", "Sub", "Sum", "Tanh", "Tile", "Transpose", "Unsqueeze", "Where",
})


def _attrs(node: onnx.NodeProto) -> dict:
    out = {}
    for a in node.attribute:
        value = onnx.helper.get_attribute_value(a)
        if isinstance(value, onnx.TensorProto):
            value = numpy_helper.to_array(value)
        elif isinstance(value, bytes):
            value = value.decode()
        elif isinstance(value, list) and value and isinstance(value[0], bytes):
            value = [v.decode() for v in value]
        out[a.name] = value
    out["_outputs"] = len(node.output)
    return out


def _lstm_problem(node, attrs) -> str | None:
    if len(node.input) > 4 and node.input[4]:
        return "sequence_lens"
    if len(node.input) > 7 and node.input[7]:
        return "peepholes (P)"
    if attrs.get("activations") and [a.lower() for a in attrs["activations"]] not in (
            ["sigmoid", "tanh", "tanh"], ["sigmoid", "tanh", "tanh"] * 2):
        return f"activations {attrs['activations']}"
    if attrs.get("clip") is not None:
        return "clip"
    if attrs.get("input_forget", 0):
        return "input_forget=1"
    if attrs.get("direction", "forward") == "reverse":
        return "direction=reverse"
    return None


def check_supported(model: ModelProto) -> None:
    """Raise :class:`ConversionError` naming every op (and LSTM form) the converter lacks, before any work."""
    missing: dict[str, list[str]] = {}
    for node in model.graph.node:
        op = node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}.{node.op_type}"
        if op not in SUPPORTED_OPS:
            missing.setdefault(op, []).append(node.name or node.output[0])
        elif op == "LSTM":
            problem = _lstm_problem(node, _attrs(node))
            if problem:
                missing.setdefault(f"LSTM with {problem}", []).append(node.name or node.output[0])
        elif op == "MaxPool" and len(node.output) > 1 and node.output[1]:
            missing.setdefault("MaxPool with Indices output", []).append(node.name or node.output[0])
    if missing:
        listed = "; ".join(f"{op} (node {', '.join(repr(n) for n in names[:3])}{' ...' if len(names) > 3 else ''})"
                           for op, names in missing.items())
        raise ConversionError(f"the model uses ops onnxforge cannot convert to PyTorch: {listed}. "
                              f"Supported: {', '.join(sorted(SUPPORTED_OPS))}")


def _identifier(text: str) -> str:
    out = re.sub(r"\W", "_", text)
    if not out or out[0].isdigit() or keyword.iskeyword(out):
        out = "_" + out
    return out


def _buffers_of(model: ModelProto) -> set:
    names: set[str] = set()
    for node in model.graph.node:
        if node.op_type == "BatchNormalization":
            names.update(i for i in node.input[3:5] if i)
    return names


def _make_module_class():
    import torch

    class OnnxModule(torch.nn.Module):
        """Runs an ONNX graph with PyTorch ops; parameters are named after the initialisers."""

        def __init__(self, model: ModelProto):
            super().__init__()
            check_supported(model)
            graph = model.graph
            self.input_names = [i.name for i in graph.input if i.name not in {t.name for t in graph.initializer}]
            self.output_names = [o.name for o in graph.output]
            self._constants: dict[str, np.ndarray] = {}
            self._tensors: dict[str, tuple] = {}   # initialiser name -> (submodule path, attribute)
            self.torch_names: dict[str, str] = {}  # state_dict key -> initialiser name
            buffers = _buffers_of(model)
            for init in graph.initializer:
                value = numpy_helper.to_array(init)
                if value.dtype.kind != "f" or value.ndim == 0:
                    self._constants[init.name] = value
                    continue
                path = [_identifier(p) for p in init.name.split(".")]
                path = [p + "_" if hasattr(torch.nn.Module, p) or p in ("run", "input_names", "output_names")
                        else p for p in path]
                owner: torch.nn.Module = self
                for i, part in enumerate(path[:-1]):
                    while part in owner._parameters or part in owner._buffers:  # "a" and "a.b" both exist
                        part = path[i] = part + "_"
                    child = owner._modules.get(part)
                    if child is None:
                        child = torch.nn.Module()
                        owner.add_module(part, child)
                    owner = child
                while path[-1] in owner._modules or path[-1] in owner._parameters or path[-1] in owner._buffers:
                    path[-1] += "_"
                tensor = torch.from_numpy(np.array(value))
                if init.name in buffers:
                    owner.register_buffer(path[-1], tensor)
                else:
                    owner.register_parameter(path[-1], torch.nn.Parameter(tensor))
                self._tensors[init.name] = owner, path[-1]
                self.torch_names[".".join(path)] = init.name
            self._nodes = []
            for node in graph.node:
                attrs = _attrs(node)
                if node.op_type == "Constant":
                    self._constants[node.output[0]] = constant_value(node)
                    continue
                self._nodes.append((node.op_type, list(node.input), list(node.output), attrs))

        def _value(self, name, env):
            if name in env:
                return env[name]
            if name in self._tensors:
                owner, attr = self._tensors[name]
                return getattr(owner, attr)
            return self._constants[name]

        def run(self, *inputs):
            ops = _ops()
            env = dict(zip(self.input_names, inputs))
            for op, ins, outs, attrs in self._nodes:
                values = [self._value(i, env) if i else None for i in ins]
                results = ops[op](values, attrs)
                for name, value in zip(outs, results):
                    if name:
                        env[name] = value
            from onnxforge.runtime.convert._torch_values import T

            out = tuple(T(env[n]) if n in env else T(self._value(n, env)) for n in self.output_names)
            return out[0] if len(out) == 1 else out

    return OnnxModule


_CLASS = None


def OnnxModule(model: ModelProto):  # noqa: N802 - a class made on first use so torch loads lazily
    """Build the interpreter module for ``model`` (already checked and upgraded)."""
    global _CLASS
    if _CLASS is None:
        _CLASS = _make_module_class()
    return _CLASS(model)


def to_torch_module(model: ModelProto):
    """An ``nn.Module`` whose ``forward`` takes the model's inputs by their (identifier) names."""
    module = OnnxModule(model)
    args = [_identifier(n) for n in module.input_names]
    if len(set(args)) != len(args):
        args = [f"{a}_{i}" for i, a in enumerate(args)]
    namespace: dict = {}
    exec(f"def forward(self, {', '.join(args)}):\n    return self.run({', '.join(args)})\n", namespace)  # noqa: S102
    module.forward = namespace["forward"].__get__(module)
    module.argument_names = args
    return module


def _concrete(size):
    """The int a (possibly symbolic) size was specialised to, or None if it stayed dynamic."""
    if isinstance(size, int):
        return size
    node = size.node
    expr = node.shape_env.replace(node.expr) if getattr(node, "shape_env", None) is not None else node.expr
    return int(expr) if getattr(expr, "is_number", False) else None


DEFAULT_EXAMPLE_SIZE = 8  # example size of dynamic dims other than the batch (e.g. a sequence length)


def export_program(model: ModelProto, path, *, sizes: dict | None = None, progress=None) -> dict:
    """Build the module, ``torch.export`` it with dynamic dims where the ONNX inputs have them,
    save it with the sidecar, and return ``{"inputs", "outputs", "dynamic", "fixed"}``.

    ``sizes`` gives example sizes for named dynamic dims (``{"T": 20}``). torch.export keeps a dim
    dynamic only if the traced code allows it: ``torch.lstm`` loops over time while tracing, so an
    LSTM's sequence length is fixed at its example size; ``fixed`` reports such dims.
    """
    import torch

    module = to_torch_module(model).eval()
    feeds = random_feeds(model, batch=2, other=DEFAULT_EXAMPLE_SIZE, sizes=sizes)
    args = tuple(torch.from_numpy(feeds[n]) for n in module.input_names)
    dynamic = {}
    specs = []
    for vi, arg in zip([i for i in model.graph.input if i.name in module.input_names], module.argument_names):
        dims = {}
        for k, d in enumerate(vi.type.tensor_type.shape.dim):
            if not d.HasField("dim_value"):
                dims[k] = torch.export.Dim.AUTO
        specs.append(dims or None)
        dynamic[arg] = sorted(dims)
    if progress:
        progress("export")
    try:
        program = torch.export.export(module, args, dynamic_shapes=tuple(specs), strict=False)
    except Exception as exc:  # noqa: BLE001 - torch raises many kinds
        raise ConversionError(f"torch.export could not trace the converted module: {str(exc).splitlines()[0]}") from None
    placeholders = [n for n in program.graph.nodes if n.op == "placeholder"
                    and n.name in program.graph_signature.user_inputs]
    fixed: dict = {}
    for name, node, spec_dims in zip(module.input_names, placeholders, specs):
        for k in spec_dims or {}:
            size = _concrete(node.meta["val"].shape[k])
            if size is not None:
                fixed.setdefault(name, {})[k] = size
    sidecar = {"inputs": module.input_names, "outputs": module.output_names,
               "names": {k: v for k, v in module.torch_names.items() if k != v},
               "metadata_props": {p.key: p.value for p in model.metadata_props},
               "producer": "onnxforge"}
    if progress:
        progress("save")
    torch.export.save(program, str(path), extra_files={SIDECAR: json.dumps(sidecar)})
    dynamic = {n: [k for k in dims if k not in fixed.get(n, {})] for n, dims in zip(module.input_names, dynamic.values())}
    return {"inputs": module.input_names, "outputs": module.output_names, "dynamic": dynamic, "fixed": fixed,
            "example_sizes": {n: list(v.shape) for n, v in feeds.items()}}
