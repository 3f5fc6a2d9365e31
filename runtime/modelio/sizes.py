"""Sizes of tensors computed from constants, for the loader's ``max_materialized_mb`` limit.

A small file can make a large tensor by computing its shape: ``Range`` to a constant limit,
``Tile`` by constant repeats, ``ConstantOfShape``/``Expand`` of a shape that came through
``Identity``, ``Reshape``, ``Cast``, ``Concat``, ``Shape``, ``Squeeze``/``Unsqueeze`` or integer
arithmetic (``Add``, ``Sub``, ``Mul``) on constants. :class:`Known` follows those chains node
by node (values of small integer tensors, shapes and element types of any tensor it can tell)
and says, for each node, how many bytes its output takes when that is fixed by constants.
"""

from __future__ import annotations

import math

from onnx import TensorProto, numpy_helper

from onnxforge.runtime.errors import ModelError
from onnxforge.runtime.modelio.dtypes import storage_bytes

__all__ = ["Known", "MAKERS"]

MAX_VALUES = 64  # integer tensors at most this long are followed by value
MAKERS = ("ConstantOfShape", "Expand", "Tile", "Range")  # ops whose output size a constant input sets
_INTS = (TensorProto.INT64, TensorProto.INT32, TensorProto.INT16, TensorProto.INT8, TensorProto.UINT8,
         TensorProto.UINT16, TensorProto.UINT32, TensorProto.UINT64)


def _bytes(data_type: int, dims) -> int:
    try:
        return storage_bytes(data_type, [max(int(d), 0) for d in dims])
    except ModelError:  # an unknown type: a byte an element (the loader's other checks report it)
        return math.prod(max(int(d), 0) for d in dims)


_FLOATS = (TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.FLOAT16, TensorProto.BFLOAT16)


def _tensor_values(tensor: TensorProto) -> list | None:
    """The values of a small integer (ints) or float (floats: a Range's bounds) tensor."""
    if tensor.data_type not in _INTS + _FLOATS or math.prod(tensor.dims) > MAX_VALUES:
        return None
    if tensor.data_location == TensorProto.EXTERNAL:
        return None
    kind = int if tensor.data_type in _INTS else float
    try:
        values = [kind(v) for v in numpy_helper.to_array(tensor).reshape(-1)]
    except Exception:  # noqa: BLE001 - malformed: the loader's other checks report it
        return None
    return values if all(math.isfinite(v) for v in values) else None


def _ints(values):
    return values if values is not None and all(type(v) is int for v in values) else None


class Known:
    """What is known of one graph's tensors (``outer``: the enclosing graph's, for subgraphs)."""

    def __init__(self, outer: Known | None = None):
        self.values: dict[str, list[int]] = {}
        self.shapes: dict[str, list[int]] = {}
        self.types: dict[str, int] = {}
        self.outer = outer

    def _get(self, table: str, name: str):
        here = getattr(self, table).get(name)
        return here if here is not None or self.outer is None else self.outer._get(table, name)

    def value(self, node, i: int):
        return self._get("values", node.input[i]) if len(node.input) > i and node.input[i] else None

    def ints(self, node, i: int):
        return _ints(self.value(node, i))

    def shape(self, node, i: int):
        return self._get("shapes", node.input[i]) if len(node.input) > i and node.input[i] else None

    def dtype(self, node, i: int, default: int = TensorProto.FLOAT) -> int:
        found = self._get("types", node.input[i]) if len(node.input) > i and node.input[i] else None
        return default if found is None else found

    def constant(self, name: str, tensor: TensorProto) -> None:
        self.shapes[name] = list(tensor.dims)
        self.types[name] = tensor.data_type
        values = _tensor_values(tensor)
        if values is not None:
            self.values[name] = values

    def _set(self, name: str, shape=None, values=None, dtype=None) -> None:
        if shape is not None and all(isinstance(d, int) and d >= 0 for d in shape):
            self.shapes[name] = list(shape)
        if values is not None and len(values) <= MAX_VALUES:
            self.values[name] = list(values)
        if dtype is not None:
            self.types[name] = dtype

    def node(self, node) -> int | None:
        """Learn what ``node`` makes; returns the bytes of its output when constants fix them and
        the op makes a new tensor of that size (one of :data:`MAKERS`), else ``None``."""
        if node.domain not in ("", "ai.onnx") or not node.output:
            return None
        out, op = node.output[0], node.op_type
        attrs = {a.name: a for a in node.attribute}
        if op == "Constant":
            if "value" in attrs:
                self.constant(out, attrs["value"].t)
            elif "value_ints" in attrs:
                self._set(out, [len(attrs["value_ints"].ints)], list(attrs["value_ints"].ints), TensorProto.INT64)
            elif "value_int" in attrs:
                self._set(out, [], [attrs["value_int"].i], TensorProto.INT64)
            return None
        rule = _RULES.get(op)
        return rule(self, node, out, attrs) if rule is not None else None

    # -- ops that pass values or shapes on -------------------------------------------------------
    def _identity(self, node, out, attrs):
        self._set(out, self.shape(node, 0), self.value(node, 0), self.dtype(node, 0))

    def _cast(self, node, out, attrs):
        to = attrs["to"].i if "to" in attrs else None
        self._set(out, self.shape(node, 0), self.value(node, 0) if to in _INTS else None, to)

    def _reshape(self, node, out, attrs):
        source, target = self.shape(node, 0), self.ints(node, 1)
        shape = None
        if target is not None and source is not None:
            dims = [source[i] if d == 0 and i < len(source) else d for i, d in enumerate(target)]
            if dims.count(-1) == 1:
                rest = math.prod(d for d in dims if d != -1)
                dims[dims.index(-1)] = math.prod(source) // rest if rest else 0
            shape = dims
        self._set(out, shape, self.value(node, 0), self.dtype(node, 0))

    def _squeeze(self, node, out, attrs):
        self._set(out, None, self.value(node, 0), self.dtype(node, 0))


    def _shape(self, node, out, attrs):
        shape = self.shape(node, 0)
        if shape is not None and "start" not in attrs and "end" not in attrs:
            self._set(out, [len(shape)], shape, TensorProto.INT64)

    def _concat(self, node, out, attrs):
        parts = [self._get("values", name) if name else None for name in node.input]
        if all(p is not None for p in parts):
            joined = [v for p in parts for v in p]
            self._set(out, [len(joined)], joined, self.dtype(node, 0))

    def _arith(self, node, out, fn):
        a, b = self.value(node, 0), self.value(node, 1)
        if a is None or b is None or not (len(a) == len(b) or len(a) == 1 or len(b) == 1):
            return None
        width = max(len(a), len(b))
        a, b = a * width if len(a) == 1 else a, b * width if len(b) == 1 else b
        self._set(out, [width], [fn(x, y) for x, y in zip(a, b, strict=True)], self.dtype(node, 0))
        return None

    def _add(self, node, out, attrs):
        return self._arith(node, out, lambda x, y: x + y)

    def _sub(self, node, out, attrs):
        return self._arith(node, out, lambda x, y: x - y)

    def _mul(self, node, out, attrs):
        return self._arith(node, out, lambda x, y: x * y)

    # -- ops that make a tensor of a size their inputs fix ---------------------------------------
    def _made(self, out: str, shape, dtype: int) -> int:
        self._set(out, shape, None, dtype)
        return _bytes(dtype, shape)

    def _constant_of_shape(self, node, out, attrs):
        shape = self.ints(node, 0)
        if shape is None or any(d < 0 for d in shape):
            return None
        dtype = attrs["value"].t.data_type if "value" in attrs else TensorProto.FLOAT
        size = self._made(out, shape, dtype)
        if "value" in attrs and math.prod(shape) <= MAX_VALUES:
            fill = _tensor_values(attrs["value"].t)
            if fill:
                self.values[out] = fill[:1] * math.prod(shape)
        return size

    def _expand(self, node, out, attrs):
        target = self.ints(node, 1)
        if target is None or any(d < 0 for d in target):
            return None
        dims = self.shape(node, 0) or []
        width = max(len(dims), len(target))
        dims, target = [1] * (width - len(dims)) + list(dims), [1] * (width - len(target)) + list(target)
        return self._made(out, [b if a == 1 else a for a, b in zip(dims, target, strict=True)], self.dtype(node, 0))

    def _tile(self, node, out, attrs):
        dims, repeats = self.shape(node, 0), self.ints(node, 1)
        if dims is None or repeats is None or len(dims) != len(repeats) or any(r < 0 for r in repeats):
            return None
        return self._made(out, [d * r for d, r in zip(dims, repeats, strict=True)], self.dtype(node, 0))

    def _range(self, node, out, attrs):
        start, limit, delta = (self.value(node, i) for i in range(3))
        if not (start and limit and delta) or len(start) != 1 or len(limit) != 1 or len(delta) != 1 or not delta[0]:
            return None
        count = max(math.ceil((limit[0] - start[0]) / delta[0]), 0)
        if _ints(start + limit + delta):
            count = max(-(-(limit[0] - start[0]) // delta[0]), 0)  # exact for integers of any size
        size = self._made(out, [count], self.dtype(node, 0, TensorProto.INT64))
        if count <= MAX_VALUES and _ints(start + limit + delta):
            self.values[out] = list(range(start[0], limit[0], delta[0]))
        return size


# each op's rule, by its spec name
_RULES = {"Identity": Known._identity, "Cast": Known._cast, "Reshape": Known._reshape, "Squeeze": Known._squeeze,
          "Unsqueeze": Known._squeeze, "Flatten": Known._squeeze, "Shape": Known._shape, "Concat": Known._concat,
          "Add": Known._add, "Sub": Known._sub, "Mul": Known._mul, "ConstantOfShape": Known._constant_of_shape,
          "Expand": Known._expand, "Tile": Known._tile, "Range": Known._range}
