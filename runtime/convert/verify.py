"""Checking a conversion: run the source and the result on the same random inputs and report the
largest absolute difference over all outputs (matched by position).

Runners: ONNX through ONNX Runtime, or through ``onnx.reference.ReferenceEvaluator`` when the
installed runtime refuses the file (an old opset it no longer implements, an IR too new); ``.pt2``
through ``torch.export.load(...).module()``; TorchScript through ``torch.jit.load``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from onnx import ModelProto, helper

from onnxforge.runtime.errors import ConversionError
from onnxforge.runtime.inference.session import Session
from onnxforge.runtime.ort.distribution import ort, quiet_native_stderr
from onnxforge.runtime.passes.plugin_forms import InlinePlugins

__all__ = ["InputSpec", "onnx_input_specs", "random_feeds", "random_inputs", "run", "compare"]


class InputSpec(tuple):
    """``(name, shape, dtype, high)``: ``shape`` holds ``None`` or the dim's name for dynamic dims; ``high`` bounds
    integer inputs (token ids read by a ``Gather``)."""

    __slots__ = ()

    def __new__(cls, name, shape, dtype, high=None):
        return super().__new__(cls, (name, tuple(shape), np.dtype(dtype), high))

    name = property(lambda s: s[0])
    shape = property(lambda s: s[1])
    dtype = property(lambda s: s[2])
    high = property(lambda s: s[3])


def _gather_bounds(model: ModelProto) -> dict:
    sizes = {t.name: list(t.dims) for t in model.graph.initializer}
    bounds: dict = {}
    for node in model.graph.node:
        if node.op_type == "Gather" and node.input[0] in sizes:
            axis = next((a.i for a in node.attribute if a.name == "axis"), 0)
            dims = sizes[node.input[0]]
            bounds[node.input[1]] = min(bounds.get(node.input[1], 1 << 30), dims[axis] if dims else 1)
    return bounds


def onnx_input_specs(model: ModelProto) -> list[InputSpec]:
    inits = {t.name for t in model.graph.initializer}
    bounds = _gather_bounds(model)
    specs = []
    for vi in model.graph.input:
        if vi.name in inits:
            continue
        tt = vi.type.tensor_type
        dtype = helper.tensor_dtype_to_np_dtype(tt.elem_type) if tt.elem_type else np.float32
        shape = [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in tt.shape.dim]
        specs.append(InputSpec(vi.name, shape, dtype, bounds.get(vi.name)))
    return specs


def random_inputs(specs, *, batch: int = 3, other: int = 5, sizes: dict | None = None, seed: int = 0) -> dict:
    """Random arrays for ``specs``: a dynamic dim named in ``sizes`` gets that size, other dynamic
    first dims ``batch`` and the rest ``other``; floats are standard normal, integers uniform in
    ``[0, high)`` (10 without a bound), bools fair."""
    rng = np.random.default_rng(seed)
    sizes = sizes or {}
    feeds = {}
    for spec in specs:
        shape = [d if isinstance(d, int) else sizes.get(d, batch if i == 0 else other) for i, d in enumerate(spec.shape)]
        if spec.dtype.kind == "f":
            feeds[spec.name] = rng.standard_normal(shape).astype(spec.dtype)
        elif spec.dtype.kind in "iu":
            feeds[spec.name] = rng.integers(0, spec.high or 10, shape).astype(spec.dtype)
        elif spec.dtype.kind == "b":
            feeds[spec.name] = rng.random(shape) < 0.5
        else:
            raise ConversionError(f"input '{spec.name}' has dtype {spec.dtype}, for which no random values can be made")
    return feeds


def random_feeds(model: ModelProto, *, batch: int = 3, other: int = 5, sizes: dict | None = None, seed: int = 0) -> dict:
    return random_inputs(onnx_input_specs(model), batch=batch, other=other, sizes=sizes, seed=seed)


def _run_onnx(model: ModelProto, feeds: dict) -> tuple[list, str]:
    names = [s.name for s in onnx_input_specs(model)]
    ordered = {n: feeds[n] for n in names} if set(names) <= set(feeds) else dict(zip(names, feeds.values()))
    def raw_ort():
        rt = ort()
        options = rt.SessionOptions()
        options.log_severity_level = 3
        with quiet_native_stderr():
            session = rt.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
            return session.run(None, ordered)

    def onnxforge_session():  # registers plugin ops (function bodies, Python kernels)
        session = Session(model, "cpu")
        outs = session.run(ordered)
        return [outs[o.name] for o in model.graph.output]

    def reference():
        from onnx.reference import ReferenceEvaluator

        return ReferenceEvaluator(model).run(None, ordered)

    def reference_inlined():
        from onnx.reference import ReferenceEvaluator

        return ReferenceEvaluator(InlinePlugins()(model).model).run(None, ordered)

    first = None
    for engine, runner in (("onnxruntime", raw_ort), ("onnxforge session", onnxforge_session),
                           ("onnx.reference", reference), ("onnx.reference", reference_inlined)):
        try:
            return [np.asarray(o) for o in runner()], engine
        except Exception as exc:  # noqa: BLE001 - the runtime refuses the file: the next engine may not
            first = first or exc
    raise ConversionError(f"neither ONNX Runtime nor onnx.reference can run the model: {str(first).splitlines()[0]}")


def run(kind: str, source, feeds: dict) -> tuple[list, str]:
    """Outputs (numpy arrays, in order) of ``source`` of ``kind`` on ``feeds`` (ordered like the inputs)."""
    if kind == "onnx":
        return _run_onnx(source, feeds)
    import torch

    args = [torch.from_numpy(np.ascontiguousarray(v)) for v in feeds.values()]
    if kind == "pt2":
        module = torch.export.load(str(source)).module() if isinstance(source, (str, Path)) else source
        engine = "torch.export"
    elif kind == "torchscript":
        module = torch.jit.load(str(source)) if isinstance(source, (str, Path)) else source
        module.eval()
        engine = "torchscript"
    else:  # a plain nn.Module
        module, engine = source, "torch"
    with torch.no_grad():
        out = module(*args)
    if isinstance(out, dict):
        out = list(out.values())
    if not isinstance(out, (list, tuple)):
        out = [out]
    flat: list = []
    for o in out:
        if isinstance(o, (list, tuple)):
            flat.extend(o)
        else:
            flat.append(o)
    return [o.detach().numpy() for o in flat], engine


def compare(expected: list, got: list) -> float:
    """Largest absolute difference over outputs matched by position; shapes must agree."""
    if len(expected) != len(got):
        raise ConversionError(f"the source has {len(expected)} outputs and the result {len(got)}")
    worst = 0.0
    for i, (a, b) in enumerate(zip(expected, got)):
        a, b = np.asarray(a), np.asarray(b)
        if a.shape != b.shape:
            raise ConversionError(f"output {i}: the source gives shape {list(a.shape)}, the result {list(b.shape)}")
        if a.size:
            worst = max(worst, float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64)))))
    return worst
