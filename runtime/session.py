"""Inference: ``onnxforge.runtime.load(path_or_model, device="auto")`` and the :class:`Session`."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
from onnx import ModelProto

from onnxforge.runtime._ort import ort
from onnxforge.runtime.device import Device, resolve_device
from onnxforge.runtime.errors import InputError, ModelError
from onnxforge.runtime.modelio import get_metadata, load_model, make_runtime_compatible

__all__ = ["IOInfo", "Session", "load"]

_ORT_TYPES = {
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
    "tensor(float16)": np.float16,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(int16)": np.int16,
    "tensor(int8)": np.int8,
    "tensor(uint8)": np.uint8,
    "tensor(uint16)": np.uint16,
    "tensor(uint32)": np.uint32,
    "tensor(uint64)": np.uint64,
    "tensor(bool)": np.bool_,
    "tensor(string)": np.str_,
}


@dataclass(frozen=True)
class IOInfo:
    """One input or output: its name, shape (``None`` or a name for a dynamic dimension), dtype."""

    name: str
    shape: tuple
    dtype: np.dtype

    def describe(self) -> str:
        dims = ", ".join("?" if d is None else str(d) for d in self.shape)
        return f"{np.dtype(self.dtype).name} [{dims}]"

    def to_dict(self) -> dict:
        return {"name": self.name, "shape": [d if isinstance(d, int) else None for d in self.shape],
                "dtype": np.dtype(self.dtype).name}


def _io_info(arg) -> IOInfo:
    dtype = _ORT_TYPES.get(arg.type)
    shape = tuple(d if isinstance(d, int) and d > 0 else (d if isinstance(d, str) else None) for d in (arg.shape or []))
    return IOInfo(arg.name, shape, np.dtype(dtype) if dtype is not None else np.dtype(object))


def _io_info_from_model(model: ModelProto) -> list[IOInfo]:
    """The graph inputs that are not initialisers, as :class:`IOInfo` (no session needed)."""
    from onnx import helper

    inits = {t.name for t in model.graph.initializer}
    out = []
    for vi in model.graph.input:
        if vi.name in inits:
            continue
        tt = vi.type.tensor_type
        dtype = helper.tensor_dtype_to_np_dtype(tt.elem_type) if tt.elem_type else np.dtype(object)
        dims = tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in tt.shape.dim)
        out.append(IOInfo(vi.name, dims, np.dtype(dtype)))
    return out


def session_options(threads: int | None = None, optimization: str = "all", inter_op_threads: int | None = None):
    """ORT SessionOptions: intra-op threads and graph optimisation level (disable|basic|extended|all)."""
    rt = ort()
    options = rt.SessionOptions()
    levels = {
        "disable": rt.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": rt.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": rt.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": rt.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }
    if optimization not in levels:
        from onnxforge.runtime.errors import ConfigError

        raise ConfigError(f"optimization must be one of {', '.join(levels)}; got {optimization!r}")
    options.graph_optimization_level = levels[optimization]
    if threads:
        options.intra_op_num_threads = int(threads)
    if inter_op_threads:
        options.inter_op_num_threads = int(inter_op_threads)
    options.log_severity_level = 3
    return options


def validate_feeds(feeds, inputs: list[IOInfo]) -> dict:
    """Check ``feeds`` against ``inputs``; return arrays ready for ONNX Runtime.

    Arrays of the same kind are cast (float64 to float32, int32 to int64); a different kind,
    rank or fixed dimension raises :class:`InputError` naming the input.
    """
    if not isinstance(feeds, dict):
        raise InputError(f"feeds must be a dict of input name to array; got {type(feeds).__name__}")
    expected = {i.name: i for i in inputs}
    unknown = [k for k in feeds if k not in expected]
    if unknown:
        raise InputError(
            f"unknown input '{unknown[0]}'; the model's inputs are: {', '.join(expected) or '(none)'}"
        )
    out = {}
    for info in inputs:
        if info.name not in feeds:
            raise InputError(f"missing input '{info.name}' (expected {info.describe()})")
        value = feeds[info.name]
        arr = np.asarray(value)
        want = np.dtype(info.dtype)
        if arr.dtype != want:
            if arr.dtype.kind == want.kind or (want.kind == "f" and arr.dtype.kind in "iu" and arr.size == 0):
                arr = arr.astype(want)
            else:
                raise InputError(
                    f"input '{info.name}' expects dtype {want.name}, got {arr.dtype.name}"
                )
        if info.shape and arr.ndim != len(info.shape):
            raise InputError(
                f"input '{info.name}' expects rank {len(info.shape)} {info.describe()}, "
                f"got rank {arr.ndim} with shape {list(arr.shape)}"
            )
        for axis, (dim, got) in enumerate(zip(info.shape, arr.shape)):
            if isinstance(dim, int) and dim != got:
                raise InputError(
                    f"input '{info.name}' expects size {dim} on axis {axis} {info.describe()}, "
                    f"got shape {list(arr.shape)}"
                )
        out[info.name] = np.ascontiguousarray(arr)
    return out


class Session:
    """An inference session over one ONNX model. ``run`` is safe to call from several threads."""

    def __init__(self, model: ModelProto, device: Device, *, options=None, source: str | None = None):
        self.model = model
        self.device = device
        self.source = source
        self.metadata = get_metadata(model)
        from onnxforge import plugins

        prepared = plugins.prepare_inference(model)
        options = options or session_options()
        plugins.register_custom_ops(prepared, options)
        prepared = make_runtime_compatible(prepared)
        rt = ort()
        try:
            self._sess = rt.InferenceSession(prepared.SerializeToString(), options, providers=list(device.providers))
        except Exception as exc:  # noqa: BLE001 - ORT raises its own exception types
            name = source or model.graph.name or "model"
            raise ModelError(f"ONNX Runtime cannot load {name}: {_first_line(exc)}") from None
        self.inputs = [_io_info(a) for a in self._sess.get_inputs()]
        self.outputs = [_io_info(a) for a in self._sess.get_outputs()]
        self._output_names = [o.name for o in self.outputs]

    @property
    def providers(self) -> list[str]:
        return self._sess.get_providers()

    def run(self, feeds: dict, outputs: list[str] | None = None) -> dict[str, np.ndarray]:
        """Run the model; ``feeds`` maps input names to arrays. Returns ``{output name: array}``."""
        ready = validate_feeds(feeds, self.inputs)
        names = outputs or self._output_names
        bad = [n for n in names if n not in self._output_names]
        if bad:
            raise InputError(f"unknown output '{bad[0]}'; the model's outputs are: {', '.join(self._output_names)}")
        try:
            values = self._sess.run(names, ready)
        except Exception as exc:  # noqa: BLE001
            raise InputError(f"ONNX Runtime rejected the feeds: {_first_line(exc)}") from None
        return dict(zip(names, values))

    def predict(self, x, batch_size: int | None = None) -> np.ndarray:
        """First output for a single-input model, computed in chunks of ``batch_size`` rows."""
        if len(self.inputs) != 1:
            raise InputError(
                f"predict() needs a model with one input; this one has {len(self.inputs)}: "
                f"{', '.join(i.name for i in self.inputs)}; use run()"
            )
        name = self.inputs[0].name
        x = np.asarray(x)
        if not batch_size or x.ndim == 0 or len(x) <= batch_size:
            return self.run({name: x})[self._output_names[0]]
        parts = [self.run({name: x[i : i + batch_size]})[self._output_names[0]] for i in range(0, len(x), batch_size)]
        return np.concatenate(parts, axis=0)

    def __repr__(self) -> str:
        ins = ", ".join(f"{i.name}: {i.describe()}" for i in self.inputs)
        outs = ", ".join(f"{o.name}: {o.describe()}" for o in self.outputs)
        return f"Session({ins} -> {outs} on {self.device.name})"


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    for marker in ("] : ", "] "):
        if text.startswith("[ONNXRuntimeError]") and marker in text:
            text = text.split(marker, 1)[1]
            break
    return text.splitlines()[0] if text else type(exc).__name__


def load(
    path_or_model: str | os.PathLike | ModelProto | bytes,
    device: str | Device = "auto",
    *,
    threads: int | None = None,
    optimization: str = "all",
) -> Session:
    """Open a model for inference on ``device`` (``"auto"``, ``"cpu"`` or ``"cuda"``).

    ``path_or_model`` is a ``.onnx`` path, a run folder (its ``model.onnx``), bytes or a
    ``ModelProto``. Returns a :class:`Session` with ``.inputs``, ``.outputs`` and ``.run``.
    """
    source = None if isinstance(path_or_model, (ModelProto, bytes, bytearray)) else str(path_or_model)
    model = load_model(path_or_model)
    resolved = resolve_device(device)
    return Session(model, resolved, options=session_options(threads, optimization), source=source)

