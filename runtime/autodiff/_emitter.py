"""The emitter the rules write through, in three layers, one job each: :class:`ValueFacts` (what
is known at build time of each value: element type, dims, constant value), :class:`GraphWriter`
(fresh names, nodes, constants, subgraphs) and :class:`Emitter` (the shape algebra most rules
share: un-broadcasting, zeros, shapes computed at run time)."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from onnxforge.runtime.autodiff._errors import AutodiffError, UnsupportedOpError
from onnxforge.runtime.modelio.dtypes import FLOAT_TYPES

__all__ = ["Emitter", "FLOAT_TYPES", "attr"]


def attr(node: onnx.NodeProto, name: str, default=None):
    """The value of attribute ``name`` of ``node`` (ints, floats, strings, lists, tensors)."""
    for a in node.attribute:
        if a.name == name:
            value = helper.get_attribute_value(a)
            return value.decode() if isinstance(value, bytes) else value
    return default


def _same(a, b) -> bool:
    """Two static dims are provably equal (ints, or the same symbol)."""
    return a is not None and a == b


class ValueFacts:
    """What is known at build time about each value: its element type and dims (from shape
    inference, or recorded as nodes are written) and, for constants, its value."""

    def __init__(self, info: dict, consts: dict):
        self.info = info            # name -> (elem_type or None, dims list or None)
        self.consts = consts        # name -> np.ndarray, values known at build time
        self.node = None            # the forward node whose rule is running (for messages)
        self.nan_checked: set = set()  # values the forward graph tests with IsNaN
        self.producers: dict = {}   # forward value name -> the forward node that outputs it

    def producer(self, name: str, op_type: str | None = None):
        """The forward node that outputs ``name`` (None for inputs, initialisers, or when it is not
        an ``op_type`` node of the default domain): rules that recognise a pattern read it."""
        n = self.producers.get(name) if name else None
        if n is None or op_type is not None and (n.op_type != op_type or n.domain not in ("", "ai.onnx")):
            return None
        return n

    def like(self, out: str, src: str) -> str:
        """Record that ``out`` has the type and shape of ``src``; returns ``out``."""
        if src in self.info:
            self.info[out] = self.info[src]
        return out

    def is_sequence(self, name: str) -> bool:
        """``name`` is a sequence of tensors (its info gives their element type)."""
        return name in getattr(self.info, "sequences", ())

    def mark_sequence(self, name: str, elem=None) -> str:
        """Record that ``name`` is a sequence of tensors of element type ``elem``; returns ``name``."""
        if not hasattr(self.info, "sequences"):
            self.info.sequences = set()  # type: ignore[attr-defined]
        self.info[name] = (elem if elem is not None else self.elem(name), None)
        self.info.sequences.add(name)  # type: ignore[attr-defined]
        return name

    def elem(self, name: str):
        return self.info.get(name, (None, None))[0]

    def np_dtype(self, name: str):
        e = self.elem(name)
        if e is None or isinstance(e, str):
            why = "unknown (shape inference found none)" if e is None else f"that of a {e}, not a tensor"
            raise AutodiffError(f"the element type of {name!r} is {why}")
        return helper.tensor_dtype_to_np_dtype(e)

    def dims(self, name: str):
        d = self.info.get(name, (None, None))[1]
        return None if d is None else list(d)

    def rank(self, name: str):
        d = self.dims(name)
        return None if d is None else len(d)

    def need_rank(self, name: str) -> int:
        r = self.rank(name)
        if r is None:
            self.refuse(f"needs the rank of {name!r}, which shape inference could not find")
        return r

    def static_dims(self, name: str):
        """The shape as ints when every dim is known, else None."""
        d = self.dims(name)
        if d is None or any(not isinstance(v, int) for v in d):
            return None
        return d

    def value(self, name: str):
        """The value of ``name`` when it is known at build time (constants), else None."""
        return self.consts.get(name) if name else None

    def refuse(self, why: str):
        n = self.node
        where = f"op {n.op_type!r} (node {n.name!r})" if n is not None else "this model"
        raise UnsupportedOpError(f"cannot differentiate {where}: {why}",
                                 [(n.op_type, n.name, n.output[0] if n.output else "")] if n is not None else [])


class GraphWriter(ValueFacts):
    """Writes the gradient nodes and constants of one :func:`build_gradients` call under fresh
    names, recording what it knows of each output."""

    def __init__(self, info: dict, opset: int, consts: dict, prefix: str = "grad", taken: set | None = None):
        super().__init__(info, consts)
        self.opset = opset
        self.prefix = prefix
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.taken = set(taken or ())
        self._counter = 0
        self._const_cache: dict = {}

    def fresh(self, base: str = "t") -> str:
        while True:
            self._counter += 1
            name = f"{self.prefix}/{base}_{self._counter}"
            if name not in self.taken:
                self.taken.add(name)
                return name

    def op(self, op_type: str, inputs: list, n_out: int = 1, *, dims=None, elem=None, **attrs):
        """Append a node; returns its output name (or the list of names when ``n_out > 1``).
        ``dims``/``elem`` record static facts about the (first) output when the caller knows them."""
        outs = [self.fresh(op_type.lower()) for _ in range(n_out)]
        attrs = {k: v for k, v in attrs.items() if v is not None}
        self.nodes.append(helper.make_node(op_type, [i or "" for i in inputs], outs,
                                           name=outs[0].replace("/", "/node_", 1), **attrs))
        if elem is None:
            elem = self._elem_of(op_type, inputs, attrs)
        self.info[outs[0]] = (elem, None if dims is None else list(dims))
        for o in outs[1:]:
            self.info[o] = (elem, None)
        return outs[0] if n_out == 1 else outs

    _BOOL = {"Equal", "Greater", "Less", "GreaterOrEqual", "LessOrEqual", "And", "Or", "Not", "Xor", "IsNaN", "IsInf"}
    _INT = {"Shape", "Size", "NonZero", "ArgMax", "ArgMin"}

    def _elem_of(self, op_type, inputs, attrs):
        if op_type in self._BOOL:
            return TensorProto.BOOL
        if op_type in self._INT:
            return TensorProto.INT64
        if op_type == "Cast":
            return attrs.get("to")
        if op_type == "ConstantOfShape":
            v = attrs.get("value")
            return v.data_type if v is not None else TensorProto.FLOAT
        if op_type == "Where":
            inputs = inputs[1:]
        for i in inputs:
            if i and self.elem(i) is not None:
                return self.elem(i)
        return None

    def const(self, value, dtype=None) -> str:
        arr = np.asarray(value, dtype=dtype)
        key = (arr.dtype.str, arr.shape, arr.tobytes())
        if key not in self._const_cache:
            name = self.fresh("const")
            self.initializers.append(numpy_helper.from_array(arr, name))
            self.consts[name] = arr
            self.info[name] = (helper.np_dtype_to_tensor_dtype(arr.dtype), list(arr.shape))
            self._const_cache[key] = name
        return self._const_cache[key]

    def scalar(self, value: float, like: str) -> str:
        """A 0-d constant of ``like``'s element type."""
        return self.const(np.array(value, dtype=self.np_dtype(like)))

    def ints(self, values) -> str:
        return self.const(np.array(list(values), np.int64))

    def subgraph(self, name: str, inputs: list, outputs: list, build) -> onnx.GraphProto:
        """A subgraph (a Scan or Loop body) whose nodes ``build()`` emits through this emitter;
        ``inputs``/``outputs`` are ``(name, elem_type, rank)`` triples. It may read outer values."""
        saved = self.nodes
        self.nodes = []
        try:
            build()
            body = self.nodes
        finally:
            self.nodes = saved
        vi = [helper.make_tensor_value_info(n, e, [None] * r) for n, e, r in inputs]
        vo = [helper.make_tensor_value_info(n, e, [None] * r) for n, e, r in outputs]
        return helper.make_graph(body, self.fresh(name), vi, vo)

    def ensure_output(self, node: onnx.NodeProto, index: int, base: str) -> str:
        """Make the forward ``node`` declare its optional output ``index``; returns its name."""
        while len(node.output) <= index:
            node.output.append("")
        if not node.output[index]:
            node.output[index] = self.fresh(base)
        return node.output[index]


class Emitter(GraphWriter):
    """The emitter the rules write through: :class:`GraphWriter` plus the shape algebra they share."""

    def __init__(self, info: dict, opset: int, consts: dict, prefix: str = "grad", taken: set | None = None):
        super().__init__(info, opset, consts, prefix, taken)
        self._shape_cache: dict = {}

    def shape(self, name: str, start: int | None = None, end: int | None = None) -> str:
        """``Shape(name)[start:end]`` (int64, 1-D): a constant when the dims are known."""
        dims = self.dims(name)
        if dims is not None:
            part = dims[slice(start, end)]
            if all(isinstance(v, int) for v in part):
                return self.ints(part)
        key = (name, start, end)
        if key not in self._shape_cache:
            out = self.op("Shape", [name], start=start, end=end)
            r = None if dims is None else len(dims[slice(start, end)])
            self.info[out] = (TensorProto.INT64, None if r is None else [r])
            self._shape_cache[key] = out
        return self._shape_cache[key]

    def target_shape(self, name: str) -> str:
        """A Reshape target for ``name``'s shape: a constant when at most one dim is unknown
        (that one written -1), else ``Shape(name)``."""
        dims = self.dims(name)
        if dims is not None and sum(1 for d in dims if not isinstance(d, int)) == 1 and all(
                d != 0 for d in dims if isinstance(d, int)):
            return self.ints([d if isinstance(d, int) else -1 for d in dims])
        return self.shape(name)

    def fill_like(self, name: str, value: float, like_type: str | None = None) -> str:
        """A tensor of ``name``'s shape filled with ``value`` (element type of ``like_type``)."""
        t = like_type or name
        arr = np.array([value], dtype=self.np_dtype(t))
        out = self.op("ConstantOfShape", [self.shape(name)], value=numpy_helper.from_array(arr))
        self.info[out] = (self.elem(t), self.dims(name))
        return out

    def zeros_like(self, name: str) -> str:
        return self.fill_like(name, 0.0)

    def sum(self, terms: list[str]) -> str:
        if len(terms) == 1:
            return terms[0]
        return self.like(self.op("Sum", terms) if len(terms) > 2 else self.op("Add", terms), terms[0])

    def reduce_sum(self, x: str, axes, keepdims: int) -> str:
        axes = list(axes)
        if not axes:
            return x
        return self.op("ReduceSum", [x, self.ints(axes)], keepdims=keepdims)

    def reduce_to(self, g: str, target: str, g_dims=None) -> str:
        """Sum ``g`` (a gradient of a broadcast result) back to the shape of ``target``."""
        gd = self.dims(g) if g_dims is None else list(g_dims)
        td = self.dims(target)
        if gd is not None and td is not None and len(gd) >= len(td):
            lead = len(gd) - len(td)
            keep, ok = [], True
            for i, (a, b) in enumerate(zip(td, gd[lead:])):
                if a == 1:
                    if b != 1:
                        keep.append(lead + i)
                elif not _same(a, b):
                    ok = False
                    break
            if ok:
                out = g
                if keep:
                    out = self.reduce_sum(out, keep, 1)
                if lead:
                    out = self.reduce_sum(out, range(lead), 0)
                if out != g:
                    self.info[out] = (self.elem(g), td)
                return out
        # shapes not provable at build time: compute the reduction axes at run time
        out = g
        st = self.shape(target)
        if gd is not None and td is not None:
            lead = len(gd) - len(td)
            if lead:
                out = self.reduce_sum(out, range(lead), 0)
            arange = self.ints(range(len(td)))
        else:
            rank_t = self.op("Size", [st])
            lead = self.op("Sub", [self.op("Size", [self.shape(g)]), rank_t])
            zero, one = self.const(np.array(0, np.int64)), self.const(np.array(1, np.int64))
            out = self.op("ReduceSum", [out, self.op("Range", [zero, lead, one])], keepdims=0,
                          noop_with_empty_axes=1)
            arange = self.op("Range", [zero, rank_t, one])
        mask = self.op("Equal", [st, self.const(np.array(1, np.int64))])
        axes = self.op("Compress", [arange, mask], axis=0)
        out = self.op("ReduceSum", [out, axes], keepdims=1, noop_with_empty_axes=1)
        self.info[out] = (self.elem(g), td)
        return out

    def broadcast_dims(self, *names):
        """Static multidirectional broadcast of the dims of ``names`` (None where unknown)."""
        ds = [self.dims(n) for n in names]
        if any(d is None for d in ds):
            return None
        r = max(len(d) for d in ds)
        out = []
        for i in range(r):
            vals = [d[len(d) - r + i] for d in ds if len(d) - r + i >= 0]
            non1 = [v for v in vals if v != 1]
            if not non1:
                out.append(1)
            elif all(_same(v, non1[0]) for v in non1):
                out.append(non1[0])
            else:
                ints = [v for v in non1 if isinstance(v, int)]
                out.append(ints[0] if ints else None)
        return out
