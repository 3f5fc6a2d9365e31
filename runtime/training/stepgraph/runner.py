"""Runs a :class:`~onnxforge.runtime.training.stepgraph.build.StepGraph` step after step in one
plain ``InferenceSession``, the carried state (parameters, optimizer moments, running statistics)
kept in ONNX Runtime's buffers.

Two sets of ``OrtValue`` buffers, A and B, and two ``IOBinding``s: the first reads A and writes the
updated state into B, the second reads B and writes A; steps use them in turn, so no step copies a
parameter to numpy and nothing is allocated per step. The learning rate, step and AdamW's per-step
scalars (computed here from them) are ``OrtValue`` scalars viewing one host array that each step
rewrites in one assignment, the seed another (the Python side of a step is a few microseconds: it
matters on small models at 5-10k steps/s). On CUDA the buffers are device memory;
only a batch goes in and the loss (one float) comes out. Works on the plain session of
onnxruntime-training 1.19 (IR <= 10, opset <= 21) and of the maintained onnxruntime.
"""

from __future__ import annotations

import numpy as np

from onnxforge.runtime.ort.distribution import ort
from onnxforge.runtime.training.stepgraph.build import StepGraph
from onnxforge.runtime.training.stepgraph.forward import LR, SEED, STEP
from onnxforge.runtime.training.stepgraph.loss import LOSS
from onnxforge.runtime.training.stepgraph.nchwc import nchwc_session_model
from onnxforge.runtime.training.stepgraph.optim import adamw_floats

__all__ = ["StepRunner", "EvalRunner", "providers_for"]


def providers_for(device: str) -> list[str]:
    return ["CUDAExecutionProvider", "CPUExecutionProvider"] if device == "cuda" else ["CPUExecutionProvider"]


def _session(model, options, device: str):
    """The step's session; on the CPU its depthwise convolutions run on ONNX Runtime's NCHWc
    kernels (see :mod:`.nchwc`: the step itself stays standard ONNX)."""
    rt = ort()
    model = nchwc_session_model(model, device)
    return rt.InferenceSession(model.SerializeToString(), sess_options=options, providers=providers_for(device))


class StepRunner:
    """Training steps of ``graph`` from ``state`` (name -> array for every name in ``graph.state``).

    ``step(feeds, targets, lr)`` runs one step and returns the loss; ``state()`` copies the carried
    state to numpy by name (for checkpoints; packed buffers unpacked), ``load(state)`` writes it
    back; ``steps`` counts the steps taken (AdamW's bias correction uses ``steps + 1``)."""

    def __init__(self, graph: StepGraph, state: dict, *, options=None, device: str = "cpu", steps: int = 0,
                 constants: dict | None = None):
        rt = ort()
        self.graph = graph
        self.device = device
        self.session = _session(graph.model, options, device)
        self._new = rt.OrtValue.ortvalue_from_numpy
        # copies: on the CPU an OrtValue made from an array shares that array's memory
        packed = graph.pack({name: state[name] for name in graph.names()})
        self._sets = [{name: self._new(np.array(packed[name], np.float32, order="C"), device, 0)
                       for name in graph.state}, {}]
        self._sets[1] = {name: rt.OrtValue.ortvalue_from_shape_and_type(v.shape(), np.float32, device, 0)
                         for name, v in self._sets[0].items()}
        # the per-step float scalars (LR, STEP, AdamW's) are 0-d views of one host array that their
        # OrtValues share (an OrtValue made from an array on the CPU wraps its memory): a step writes
        # them all with one numpy assignment; SEED is an int64 array of its own
        self._floats = [LR, STEP, *graph.scalars]
        self._hostf = np.zeros(len(self._floats), np.float32)
        self._hostf[1] = steps + 1
        self._seed = np.zeros((), np.int64)
        self._host: dict[str, np.ndarray] = {k: self._hostf[i:i + 1].reshape(()) for i, k in enumerate(self._floats)}
        self._host[SEED] = self._seed
        self._inputs = {k: rt.OrtValue.ortvalue_from_numpy(v) for k, v in self._host.items()}
        self._adamw = bool(graph.scalars)
        self._feed_names = [*graph.feeds, graph.target]
        self._losses = [np.zeros((), np.float32) for _ in range(2)]
        self._loss = [rt.OrtValue.ortvalue_from_numpy(v) for v in self._losses]
        # inputs that never change (memory-mapped weights): bound once, borrowing the arrays' memory
        self._constants = {k: rt.OrtValue.ortvalue_from_numpy(v) for k, v in (constants or {}).items()}
        self._constant_arrays = constants  # the OrtValues borrow these: kept alive with the runner
        self._bindings = [self._binding(0, 1), self._binding(1, 0)]
        self._calls = [self._fast_calls(b) for b in self._bindings]
        self._current = 0  # the set holding the state now
        self.steps = int(steps)

    def _binding(self, src: int, dst: int):
        b = self.session.io_binding()
        g = self.graph
        for name in g.state:
            b.bind_ortvalue_input(name, self._sets[src][name])
        for flat in g.packing.views:  # the parameters read in place from the flat buffer (no Split)
            base = self._sets[src][flat]
            for member, offset, shape in g.packing.members(flat):
                b.bind_input(member, self.device, 0, np.float32, list(shape), base.data_ptr() + 4 * offset)
        for name, new in zip(g.state, g.updates):
            b.bind_ortvalue_output(new, self._sets[dst][name])
        for name, value in self._inputs.items():
            if name != SEED or g.seeded:
                b.bind_ortvalue_input(name, value)
        for name, value in self._constants.items():
            b.bind_ortvalue_input(name, value)
        b.bind_ortvalue_output(LOSS, self._loss[dst])
        if g.output:
            b.bind_output(g.output, self.device, 0)
        return b

    def _fast_calls(self, b):
        """``(bind a CPU array, run)`` for binding ``b``: onnxruntime's pybind methods themselves
        where its Python wrappers expose them (about 1 us a call less: a small model's step is
        5-10k a second), else the public wrappers."""
        sess, raw = getattr(self.session, "_sess", None), getattr(b, "_iobinding", None)
        if sess is None or raw is None or not hasattr(raw, "bind_input") or not hasattr(sess, "run_with_iobinding"):
            return b.bind_cpu_input, lambda: self.session.run_with_iobinding(b)
        return raw.bind_input, lambda: sess.run_with_iobinding(raw, None)

    def seed(self, value: int) -> None:
        self._seed[()] = int(value) % 2147483647

    def step(self, feeds: list, targets, lr: float) -> float:
        """One step on ``feeds`` (arrays in ``graph.feeds`` order) and ``targets``; returns the loss."""
        bind, run = self._calls[self._current]
        for name, value in zip(self._feed_names, [*feeds, targets]):
            bind(name, value)  # borrowed until the next step binds again (the caller holds the arrays)
        t = self.steps + 1
        if self._adamw:
            self._hostf[:] = (lr, t, *adamw_floats(lr, t, self.graph.weight_decay))
        else:
            self._hostf[:2] = (lr, t)
        run()
        self._current ^= 1
        self.steps = t
        return float(self._losses[self._current])

    def outputs(self):
        """The model output of the last step (when the graph has it), as an OrtValue."""
        return self._bindings[self._current ^ 1].get_outputs()[-1]

    def state(self) -> dict:
        values = self.graph.unpack({name: v.numpy() for name, v in self._sets[self._current].items()})
        return {name: np.array(v) for name, v in values.items()}

    def load(self, state: dict, steps: int | None = None) -> None:
        """Write the named values in ``state`` (any subset of ``graph.names()``) into the buffers."""
        known = set(self.graph.names())
        values = {**self.state(), **{k: v for k, v in state.items() if k in known}}
        carried = self._sets[self._current]
        for name, value in self.graph.pack(values).items():
            if name in carried:  # (the members of a viewed flat buffer are written through it)
                carried[name].update_inplace(np.ascontiguousarray(value, np.float32))
        if steps is not None:
            self.steps = int(steps)


class EvalRunner:
    """The evaluation graph: ``loss(feeds, targets, values)`` without updating anything."""

    def __init__(self, graph: StepGraph, *, options=None, device: str = "cpu", constants: dict | None = None):
        self.graph = graph
        self.device = device
        self.session = _session(graph.model, options, device)
        self.constants = dict(constants or {})

    def loss(self, feeds: list, targets, values: dict) -> float:
        g = self.graph
        run = {**dict(zip(g.feeds, feeds)), g.target: targets, **{n: values[n] for n in g.state}, **self.constants}
        return float(self.session.run([LOSS], run)[0])
