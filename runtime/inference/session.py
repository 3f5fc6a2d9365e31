"""Inference: ``onnxforge.runtime.load(path_or_model, device="auto")`` and the :class:`Session`."""

from __future__ import annotations

import contextlib
import os
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
from onnx import ModelProto

from onnxforge.runtime.ort.distribution import ort
from onnxforge.runtime.ort.device import Device, resolve_device
from onnxforge.runtime.errors import ConfigError, InputError, ModelError
from onnxforge.runtime.ort.failures import failure_line
from onnxforge.runtime.ort.iobinding import DeviceArray, run_bound
from onnxforge.runtime.inference.batches import common_rows, in_batches, stitch
from onnxforge.runtime.modelio.card import ModelCard
from onnxforge.runtime.modelio.dtypes import ORT_TYPES, TYPES
from onnxforge.runtime.modelio import protos
from onnxforge.runtime.modelio.files import load_model
from onnxforge.runtime.passes.pipelines import for_inference
from onnxforge import plugins
from onnxforge.runtime.inference.decoding import decode
from onnxforge.runtime.ort.threads import auto_batch_shapes, resolve_threads

__all__ = ["DeviceArray", "IOInfo", "Session", "load", "model_inputs", "session_options", "stoppable", "validate_feeds"]

_THREAD = threading.local()  # the run options :func:`stoppable` set for this thread's runs


def current_run_options():
    """The run options :func:`stoppable` set for this thread's runs (``None`` outside one)."""
    return getattr(_THREAD, "options", None)


@contextlib.contextmanager
def stoppable(run_options):
    """Every :meth:`Session.run` on this thread within the block (through ``predict``, decoding,
    ...) runs with ``run_options``, so setting its ``terminate`` from another thread stops them."""
    before = getattr(_THREAD, "options", None)
    _THREAD.options = run_options
    try:
        yield run_options
    finally:
        _THREAD.options = before

_ONNX_TO_ORT = {t.onnx: t.ort for t in TYPES}


@dataclass(frozen=True)
class IOInfo:
    """One input or output: its name, shape (``None`` or a name for a dynamic dimension), dtype."""

    name: str
    shape: tuple
    dtype: np.dtype

    def describe(self) -> str:
        dims = ", ".join("?" if d is None else str(d) for d in self.shape)
        return f"{np.dtype(self.dtype).name} [{dims}]"


def _io_info(arg) -> IOInfo:
    dtype = ORT_TYPES.get(arg.type)
    shape = tuple(d if isinstance(d, int) and d > 0 else (d if isinstance(d, str) else None) for d in (arg.shape or []))
    return IOInfo(arg.name, shape, np.dtype(dtype) if dtype is not None else np.dtype(object))


def model_inputs(model: ModelProto) -> list[IOInfo]:
    """The graph inputs that are not initialisers, as :class:`IOInfo` (no session needed)."""
    inits = {t.name for t in model.graph.initializer}
    out = []
    for vi in model.graph.input:
        if vi.name in inits:
            continue
        tt = vi.type.tensor_type
        dtype = ORT_TYPES.get(_ONNX_TO_ORT.get(tt.elem_type, ""), object)
        out.append(IOInfo(vi.name, protos.dims(vi), np.dtype(dtype)))
    return out


def session_options(threads: int | None = None, optimization: str = "all", inter_op_threads: int | None = None,
                    *, verbose: bool = False):
    """ORT SessionOptions: intra-op threads and graph optimisation level (disable|basic|extended|all).
    ONNX Runtime's own log lines (its warnings, and the error it logs before raising) go to stderr
    only when ``verbose``: a failure reaches the user as one onnxforge error line."""
    rt = ort()
    options = rt.SessionOptions()
    levels = {
        "disable": rt.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": rt.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": rt.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": rt.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }
    if optimization not in levels:
        raise ConfigError(f"optimization must be one of {', '.join(levels)}; got {optimization!r}")
    options.graph_optimization_level = levels[optimization]
    if threads:
        options.intra_op_num_threads = int(threads)
    if inter_op_threads:
        options.inter_op_num_threads = int(inter_op_threads)
    options.log_severity_level = 2 if verbose else 4  # 2: ORT's default (warnings and up); 4: fatal only
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
    out: dict[str, Any] = {}
    for info in inputs:
        if info.name not in feeds:
            raise InputError(f"missing input '{info.name}' (expected {info.describe()})")
        value = feeds[info.name]
        if isinstance(value, DeviceArray):  # already on the device: checked, never cast or copied
            if value.dtype != np.dtype(info.dtype):
                raise InputError(f"input '{info.name}' expects dtype {np.dtype(info.dtype).name}, got a "
                                 f"DeviceArray of {value.dtype.name}; DeviceArrays are not cast")
            _check_shape(info, value.shape)
            out[info.name] = value
            continue
        arr = np.asarray(value)
        want = np.dtype(info.dtype)
        if arr.dtype != want:
            if arr.dtype.kind == want.kind or (want.kind == "f" and arr.dtype.kind in "iu" and arr.size == 0):
                arr = arr.astype(want)
            else:
                raise InputError(
                    f"input '{info.name}' expects dtype {want.name}, got {arr.dtype.name}"
                )
        _check_shape(info, arr.shape)
        out[info.name] = np.ascontiguousarray(arr)
    return out


def _check_shape(info: IOInfo, shape: tuple) -> None:
    if info.shape and len(shape) != len(info.shape):
        raise InputError(
            f"input '{info.name}' expects rank {len(info.shape)} {info.describe()}, "
            f"got rank {len(shape)} with shape {list(shape)}"
        )
    for axis, (dim, got) in enumerate(zip(info.shape, shape)):
        if isinstance(dim, int) and dim != got:
            raise InputError(
                f"input '{info.name}' expects size {dim} on axis {axis} {info.describe()}, "
                f"got shape {list(shape)}"
            )


class Session:
    """An inference session over one ONNX model. ``run`` is safe to call from several threads."""

    def __init__(self, model: ModelProto, device: Device, *, options=None, source: str | None = None):
        self.model = model
        self.device = device
        self.source = source
        self.card = ModelCard.from_model(model)
        self.metadata = self.card.to_dict()
        prepared = for_inference(model)
        options = options or session_options()
        plugins.register_custom_ops(prepared, options)
        rt = ort()
        try:
            self._sess = rt.InferenceSession(prepared.SerializeToString(), options, providers=list(device.providers))
        except Exception as exc:  # noqa: BLE001 - ORT raises its own exception types
            name = source or model.graph.name or "model"
            raise ModelError(f"ONNX Runtime cannot load {name}: {failure_line(exc)}") from None
        self.inputs = [_io_info(a) for a in self._sess.get_inputs()]
        self.outputs = [_io_info(a) for a in self._sess.get_outputs()]
        self._output_names = [o.name for o in self.outputs]
        # run()'s fast path: feeds that need no cast, copy or message pass these checks in ~0.3 us
        self._fast_spec: list | None = [(i.name, np.dtype(i.dtype), len(i.shape),
                            tuple((axis, d) for axis, d in enumerate(i.shape) if isinstance(d, int)))
                           for i in self.inputs if i.shape]
        if len(self._fast_spec) != len(self.inputs):
            self._fast_spec = None  # an input of unknown rank: always the full check
        # a plugin's Python kernel that raised becomes one clear PluginError; models that import
        # no Python-kernel domain cannot run one and skip the guard's cost (~0.4 us a call)
        python_kernels = any(o.domain == plugins.PYTHON_KERNEL_DOMAIN for o in prepared.opset_import)
        self._kernel_guard = plugins.kernel_guard if python_kernels else None
        self._run_direct: Any = getattr(self._sess, "_sess", None)  # the pybind session, without the wrapper's checks

    def _run_public(self, names: list[str], ready: dict, run_options=None) -> list:
        try:
            return self._sess.run(names, ready) if run_options is None else self._sess.run(names, ready, run_options)
        except Exception as exc:  # noqa: BLE001
            raise InputError(f"ONNX Runtime rejected the feeds: {failure_line(exc)}") from None

    def _fast_feeds(self, feeds):
        """``feeds`` itself when every array already is what ONNX Runtime takes, else ``None``."""
        spec = self._fast_spec
        if spec is None or type(feeds) is not dict or len(feeds) != len(spec):
            return None
        for name, dtype, ndim, fixed in spec:
            a = feeds.get(name)
            if type(a) is not np.ndarray or a.ndim != ndim or (a.dtype is not dtype and a.dtype != dtype):
                return None
            if not a.flags.c_contiguous:
                return None
            shape = a.shape
            for axis, dim in fixed:
                if shape[axis] != dim:
                    return None
        return feeds

    @property
    def providers(self) -> list[str]:
        return self._sess.get_providers()

    def run(self, feeds: dict, outputs: list[str] | None = None, run_options=None) -> dict[str, np.ndarray]:
        """Run the model; ``feeds`` maps input names to arrays. Returns ``{output name: array}``.
        ``run_options``: ONNX Runtime's ``RunOptions`` (setting its ``terminate`` from another
        thread stops the run; see also :func:`stoppable`)."""
        if run_options is None:
            run_options = getattr(_THREAD, "options", None)
        ready = self._fast_feeds(feeds)
        if ready is None:
            ready = validate_feeds(feeds, self.inputs)
            if any(isinstance(v, DeviceArray) for v in ready.values()):
                return {k: v.numpy() for k, v in self.run_on_device(ready, outputs).items()}
        names = self._output_names if outputs is None else self._checked_outputs(outputs)
        if self._kernel_guard is None:
            try:
                values = self._run_direct.run(names, ready, run_options)
            except Exception:  # noqa: BLE001 - again through the public wrapper, for its fallback and message
                if run_options is not None and run_options.terminate:
                    raise InputError("the run was stopped (its terminate flag was set)") from None
                values = self._run_public(names, ready, run_options)
        else:
            with self._kernel_guard():
                values = self._run_public(names, ready, run_options)
        if len(names) == 1:
            return {names[0]: values[0]}
        return dict(zip(names, values))

    def predict(self, x, batch_size: int | None = None, *, output: str | None = None,
                progress: bool = False) -> np.ndarray:
        """One output (the model's main one unless ``output`` names another) for ``x``, computed in
        chunks of ``batch_size`` rows so arrays of any length (``np.load(..., mmap_mode="r")``
        included) need only one chunk's memory at a time besides the result.

        ``x`` is an array for a one-input model, or a dict of arrays with equally many rows.
        """
        if isinstance(x, dict):
            feeds = {k: v if hasattr(v, "shape") else np.asarray(v) for k, v in x.items()}
        else:
            feeds = self._single_input_feeds(x)
        name = output or self.main_output
        if name not in self._output_names:
            raise InputError(f"unknown output '{name}'; the model's outputs are: {', '.join(self._output_names)}")
        parts = in_batches(lambda chunk: self.run(chunk, [name])[name], feeds, batch_size, progress=progress)
        return stitch(parts, common_rows(feeds), name)

    def _single_input_feeds(self, x) -> dict:
        if len(self.inputs) != 1:
            raise InputError(
                f"predict() needs a model with one input or a dict of inputs; this one has {len(self.inputs)}: "
                f"{', '.join(i.name for i in self.inputs)}"
            )
        return {self.inputs[0].name: x if hasattr(x, "shape") else np.asarray(x)}

    @property
    def main_output(self) -> str:
        """The output that ``predict`` returns: the one named in the metadata, else the first."""
        named = self.card.output
        return named if named in self._output_names else self._output_names[0]

    @property
    def labels(self) -> list[str] | None:
        """Class names from the model card (``onnxforge.labels``, or a plain ``labels`` property
        as a JSON list, a ``{"0": name}`` map or comma-separated), or ``None`` when it has none."""
        return self.card.labels

    def label_names(self, indices) -> np.ndarray:
        """Class indices turned into their names from the metadata (same shape, dtype str)."""
        return _label_names(self.labels, indices)

    def predict_labels(self, x, batch_size: int | None = None) -> np.ndarray:
        """The name of the highest-scoring class of the main output for each row of ``x``."""
        return self.label_names(self.predict(x, batch_size).argmax(axis=-1))

    def warmup(self, batch_size: int = 1, runs: int = 1, run_options=None) -> float:
        """Run the model ``runs`` times on zeros shaped like its inputs (dynamic dimensions: the
        first is ``batch_size``, others 1), so the first real call does not pay for allocation
        and kernel selection. Returns the seconds it took."""
        import time

        feeds = _zero_feeds(self.inputs, batch_size)
        start = time.perf_counter()
        for _ in range(max(1, int(runs))):
            try:
                if run_options is None:
                    self._sess.run(self._output_names, feeds)
                else:
                    self._sess.run(self._output_names, feeds, run_options)
            except Exception as exc:  # noqa: BLE001
                raise ModelError(f"warm-up on zeros shaped {({k: list(v.shape) for k, v in feeds.items()})} "
                                 f"failed: {failure_line(exc)}") from None
        return time.perf_counter() - start

    def to_device(self, array, dtype=None) -> DeviceArray:
        """Copy ``array`` to this session's device once; feed the result to :meth:`run_on_device`
        as often as needed without further copies."""
        arr = np.asarray(array) if dtype is None else np.asarray(array, dtype=dtype)
        return DeviceArray.from_numpy(arr, self._device_type)

    def run_on_device(self, feeds: dict, outputs: list[str] | None = None) -> dict[str, DeviceArray]:
        """Like :meth:`run`, with I/O binding: the outputs stay on the session's device as
        :class:`DeviceArray` (``.numpy()`` copies one to the host); inputs may be arrays or
        :class:`DeviceArray` (bound in place, e.g. a previous call's outputs)."""
        ready = validate_feeds(feeds, self.inputs)
        names = self._checked_outputs(outputs)
        for name, value in ready.items():
            if isinstance(value, DeviceArray) and value.device != self._device_type:
                raise InputError(f"input '{name}' is a DeviceArray on {value.device}; this session runs on "
                                 f"{self._device_type}")
        for info in self.inputs:
            if info.dtype.kind in "OU":
                raise InputError(f"input '{info.name}' holds strings, which ONNX Runtime cannot bind; use run()")
        strings = {o.name for o in self.outputs if o.dtype.kind in "OU"}  # bound on the host, never a GPU
        guard = self._kernel_guard() if self._kernel_guard is not None else contextlib.nullcontext()
        with guard:  # a plugin's Python kernel that raised: one clear PluginError
            try:
                values = run_bound(self._sess, self._device_type, ready, names, strings)
            except Exception as exc:  # noqa: BLE001
                raise InputError(f"ONNX Runtime rejected the feeds: {failure_line(exc)}") from None
        return dict(zip(names, values))

    @property
    def _device_type(self) -> str:
        return "cuda" if self.device.name == "cuda" else "cpu"

    def _checked_outputs(self, outputs) -> list[str]:
        names = list(outputs) if outputs else self._output_names
        bad = [n for n in names if n not in self._output_names]
        if bad:
            raise InputError(f"unknown output '{bad[0]}'; the model's outputs are: {', '.join(self._output_names)}")
        return names

    def decode(self, src, **options):
        """Translate token ids ``src`` [N, S] (or one sequence [S]) with this encoder-decoder:
        ``(tokens [N, L], attention [N, L, S] or None)``. ``options`` (``max_len``, ``beam``,
        ``batch_size``) go unchanged to :func:`onnxforge.runtime.inference.decoding.decode`."""
        return decode(self, src, **options)

    def __repr__(self) -> str:
        ins = ", ".join(f"{i.name}: {i.describe()}" for i in self.inputs)
        outs = ", ".join(f"{o.name}: {o.describe()}" for o in self.outputs)
        return f"Session({ins} -> {outs} on {self.device.name})"


def _label_names(labels: list[str] | None, indices) -> np.ndarray:
    if labels is None:
        raise ModelError("the model's metadata holds no class labels (set onnxforge.labels to a JSON list)")
    idx = np.asarray(indices)
    if idx.dtype.kind not in "iu":
        raise InputError(f"class indices must be integers; got {idx.dtype.name}")
    if idx.size and (idx.min() < 0 or idx.max() >= len(labels)):
        raise InputError(f"class index {int(idx.max() if idx.max() >= len(labels) else idx.min())} is outside "
                         f"the model's {len(labels)} labels")
    return np.asarray(labels, dtype=str)[idx]


def _zero_feeds(inputs: list[IOInfo], batch_size: int) -> dict:
    """Zeros (empty strings) shaped like ``inputs``: a dynamic first dimension ``batch_size``,
    other dynamic ones 1, one size per named dimension."""
    sizes: dict = {}
    feeds = {}
    for info in inputs:
        shape = []
        for axis, dim in enumerate(info.shape):
            if isinstance(dim, int):
                shape.append(dim)
            else:
                key = dim if isinstance(dim, str) else (info.name, axis)
                shape.append(sizes.setdefault(key, batch_size if axis == 0 else 1))
        dtype = np.dtype(info.dtype)
        feeds[info.name] = np.full(shape, "", dtype=object) if dtype.kind in "OU" else np.zeros(shape, dtype)
    return feeds


def load(
    path_or_model: str | os.PathLike | ModelProto | bytes,
    device: str | Device = "auto",
    *,
    threads: int | str | None = "auto",
    optimization: str = "all",
    inter_op_threads: int | None = None,
    warmup: bool | int = False,
    verbose: bool = False,
) -> Session:
    """Open a model for inference on ``device`` (``"auto"``, ``"cpu"`` or ``"cuda"``).

    ``path_or_model`` is a ``.onnx`` path, a run folder (its ``model.onnx``), bytes or a
    ``ModelProto``. ``threads`` and ``inter_op_threads`` size ONNX Runtime's thread pools
    (``threads="auto"``: 1 intra-op thread when one call at the model's batch size, 1 unless the
    model fixes it, is small, every core otherwise; ``None``: ONNX Runtime's default),
    ``optimization`` is the graph optimisation level (``disable``, ``basic``, ``extended``,
    ``all``), ``warmup`` runs the model once (or that many times) on zeros before returning;
    ``verbose`` lets ONNX Runtime print its own warnings and errors to stderr.
    Returns a :class:`Session` with ``.inputs``, ``.outputs``, ``.run`` and ``.predict``.
    """
    source = None if isinstance(path_or_model, (ModelProto, bytes, bytearray)) else str(path_or_model)
    model = load_model(path_or_model)
    resolved = resolve_device(device)
    if threads == "auto" or threads is not None:
        threads = resolve_threads(threads, model, auto_batch_shapes(model), training=False)
    options = session_options(threads, optimization, inter_op_threads, verbose=verbose)
    session = Session(model, resolved, options=options, source=source)
    if warmup:
        session.warmup(runs=int(warmup))
    return session
