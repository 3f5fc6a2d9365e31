"""PyTorch implementations of ONNX ops (opset 13 and later forms) for the interpreter module: the
tensor, shape and elementwise ops here, the network ops in :mod:`._torch_nn`, and :data:`OPS`, the
table of both. Values are as :mod:`._torch_values` describes; each op takes ``(inputs, attrs)`` and
returns a list of outputs.
"""

from __future__ import annotations

import operator

import numpy as np
import torch
import torch.nn.functional as F

from onnxforge.runtime.convert._torch_nn import (_avgpool, _batchnorm, _conv, _conv_transpose, _gemm, _global_avgpool,
                                                 _instance_norm, _layernorm, _lstm, _maxpool, _pad, _prelu, _tile)
from onnxforge.runtime.convert._torch_values import _DTYPES, T, _as_py, _const_or_shape, _is_shape, ints

__all__ = ["OPS"]


def _elementwise(fn, a, b):
    a, b = _as_py(a), _as_py(b)
    if isinstance(a, list) and isinstance(b, list):
        if len(a) == 1:
            a = a * len(b)
        if len(b) == 1:
            b = b * len(a)
        return [fn(x, y) for x, y in zip(a, b)]
    if isinstance(a, list):
        return [fn(x, b) for x in a]
    if isinstance(b, list):
        return [fn(a, y) for y in b]
    return fn(a, b)


def _binary(torch_fn, py_fn):
    def op(inputs, attrs):
        a, b = inputs
        if _const_or_shape(a) and _const_or_shape(b) and (_is_shape(a) or _is_shape(b)):
            return [_elementwise(py_fn, a, b)]
        return [torch_fn(T(a), T(b))]
    return op


def _unary(fn):
    return lambda inputs, attrs: [fn(T(inputs[0]))]


def _flatten(inputs, attrs):
    x = T(inputs[0])
    axis = attrs.get("axis", 1) % (x.dim() + 1) if x.dim() else 0
    if axis == 0:
        return [x.reshape(1, -1)]
    if axis == 1:
        return [x.flatten(1) if x.dim() > 1 else x.reshape(-1, 1)]
    return [x.flatten(axis).flatten(0, axis - 1)]


def _reshape(inputs, attrs):
    x, shape = T(inputs[0]), ints(inputs[1])
    if not attrs.get("allowzero", 0):
        shape = [x.shape[i] if isinstance(d, int) and not isinstance(d, bool) and d == 0 else d
                 for i, d in enumerate(shape)]
    return [x.reshape(shape)]


def _transpose(inputs, attrs):
    x = T(inputs[0])
    perm = attrs.get("perm", list(reversed(range(x.dim()))))
    return [x.permute(*perm)]


def _concat(inputs, attrs):
    if all(_const_or_shape(v) for v in inputs) and any(_is_shape(v) for v in inputs):
        out = []
        for v in inputs:
            out += ints(v)
        return [out]
    return [torch.cat([T(v) for v in inputs], dim=attrs["axis"])]


def _shape(inputs, attrs):
    x = T(inputs[0])
    dims = list(x.shape)
    start, end = attrs.get("start", 0), attrs.get("end", len(dims))
    return [dims[start:end]]


def _gather(inputs, attrs):
    data, idx = inputs
    axis = attrs.get("axis", 0)
    if _is_shape(data) and isinstance(idx, np.ndarray):
        dims = ints(data)
        picked = [dims[int(i)] for i in idx.reshape(-1)]
        return [picked[0] if idx.ndim == 0 else picked]
    data = T(data)
    axis %= data.dim()
    if isinstance(idx, np.ndarray):
        if idx.ndim == 0:
            return [data.select(axis, int(idx))]
        flat = torch.from_numpy(idx.reshape(-1).astype(np.int64))
        if (idx < 0).any():
            flat = torch.where(flat < 0, flat + data.shape[axis], flat)
    else:
        idx_t = T(idx).long()
        flat = torch.where(idx_t < 0, idx_t + data.shape[axis], idx_t).reshape(-1)
    picked = data.index_select(axis, flat)
    shape = list(data.shape[:axis]) + list(idx.shape) + list(data.shape[axis + 1:])
    return [picked.reshape(shape)]


def _axes(inputs, attrs, rank):
    axes = attrs.get("axes")
    if axes is None and len(inputs) > 1 and inputs[1] is not None:
        axes = ints(inputs[1])
    return None if axes is None else sorted(a % rank for a in axes)


def _unsqueeze(inputs, attrs):
    x = inputs[0]
    if _is_shape(x) and not isinstance(x, list):
        return [[x]]
    if isinstance(x, np.ndarray) and x.dtype.kind in "iu" and x.ndim == 0:
        return [[int(x)]]
    x = T(x)
    axes = attrs.get("axes") or ints(inputs[1])
    rank = x.dim() + len(axes)
    for a in sorted(a % rank for a in axes):
        x = x.unsqueeze(a)
    return [x]


def _squeeze(inputs, attrs):
    x = inputs[0]
    if isinstance(x, list) and len(x) == 1:
        return [x[0]]
    x = T(x)
    axes = _axes(inputs, attrs, x.dim())
    if axes is None:
        return [x.squeeze()]
    for a in reversed(axes):
        x = x.squeeze(a)
    return [x]


def _slice(inputs, attrs):
    data = inputs[0]
    starts, ends = ints(inputs[1]), ints(inputs[2])
    if _is_shape(data):
        dims = ints(data)
        step = ints(inputs[4])[0] if len(inputs) > 4 and inputs[4] is not None else 1
        return [dims[slice(starts[0], ends[0], step)]]
    x = T(data)
    axes = ints(inputs[3]) if len(inputs) > 3 and inputs[3] is not None else list(range(len(starts)))
    steps = ints(inputs[4]) if len(inputs) > 4 and inputs[4] is not None else [1] * len(starts)
    index = [slice(None)] * x.dim()
    big = 2 ** 62
    for s, e, a, st in zip(starts, ends, axes, steps):
        if st < 0:
            raise TypeError("Slice with a negative step")
        index[a % x.dim()] = slice(max(min(s, big), -big), max(min(e, big), -big), st)
    return [x[tuple(index)]]


def _cast(inputs, attrs):
    to = _DTYPES[attrs["to"]]
    x = inputs[0]
    if _is_shape(x) and to in (torch.int64, torch.int32):
        return [x]
    return [T(x).to(to)]


def _constant_of_shape(inputs, attrs):
    value = attrs.get("value")
    fill = np.zeros(1, np.float32) if value is None else value
    return [torch.full(ints(inputs[0]), float(fill.reshape(-1)[0]) if fill.dtype.kind == "f" else int(fill.reshape(-1)[0]),
                       dtype=torch.from_numpy(fill).dtype)]


def _expand(inputs, attrs):
    x, shape = T(inputs[0]), ints(inputs[1])
    rank = max(x.dim(), len(shape))
    xs = [1] * (rank - x.dim()) + list(x.shape)
    ss = [1] * (rank - len(shape)) + list(shape)
    target = [a if isinstance(b, int) and b == 1 else b for a, b in zip(xs, ss)]
    return [x.reshape(xs).expand(target)]


def _where(inputs, attrs):
    c, a, b = inputs
    if all(_const_or_shape(v) or isinstance(v, np.ndarray) for v in inputs) and any(_is_shape(v) for v in inputs):
        cond = [bool(i) for i in np.asarray(c).reshape(-1)] if isinstance(c, np.ndarray) else c
        a, b = _as_py(a), _as_py(b)
        n = len(cond)
        a = a if isinstance(a, list) else [a] * n
        b = b if isinstance(b, list) else [b] * n
        return [[x if k else y for k, x, y in zip(cond, a, b)]]
    return [torch.where(T(c).bool(), T(a), T(b))]


def _compare(torch_fn, py_fn):
    """Equal, Less, Greater: bool results (a numpy array where a shape value is compared)."""
    def op(inputs, attrs):
        a, b = inputs
        if _is_shape(a) or _is_shape(b):
            return [np.array(_elementwise(lambda x, y: bool(py_fn(x, y)), a, b))]
        return [torch_fn(T(a), T(b))]
    return op


def _gather_elements(inputs, attrs):
    """GatherElements: ``out[i][j][k] = data[index[i][j][k]][j][k]`` on ``axis`` (here 0);
    negative indices count from the end of ``axis``."""
    data, index = T(inputs[0]), T(inputs[1]).long()
    axis = attrs.get("axis", 0) % data.dim()
    index = torch.where(index < 0, index + data.shape[axis], index)
    return [torch.gather(data, axis, index)]


def _reduce(fn):
    def op(inputs, attrs):
        x = T(inputs[0])
        axes = _axes(inputs, attrs, x.dim())
        keep = bool(attrs.get("keepdims", 1))
        if axes is None or axes == []:
            if attrs.get("noop_with_empty_axes", 0):
                return [x]
            axes = list(range(x.dim()))
        return [fn(x, dim=axes, keepdim=keep)]
    return op


def _softmax(fn):
    return lambda inputs, attrs: [fn(T(inputs[0]), dim=attrs.get("axis", -1))]


def _dropout(inputs, attrs):
    x = T(inputs[0])
    return [x, torch.ones_like(x, dtype=torch.bool)]


def _clip(inputs, attrs):
    x = T(inputs[0])
    lo = inputs[1] if len(inputs) > 1 else None
    hi = inputs[2] if len(inputs) > 2 else None
    return [torch.clamp(x, None if lo is None else T(lo), None if hi is None else T(hi))]


def _split(inputs, attrs):
    x = T(inputs[0])
    axis = attrs.get("axis", 0)
    sizes = attrs.get("split")
    if sizes is None and len(inputs) > 1 and inputs[1] is not None:
        sizes = ints(inputs[1])
    if sizes is None:
        n = attrs["_outputs"]
        sizes = [int(x.shape[axis]) // n] * n
    return list(torch.split(x, sizes, dim=axis))


def _pow(inputs, attrs):
    base, exp = T(inputs[0]), inputs[1]
    if isinstance(exp, np.ndarray) and exp.size == 1:
        return [torch.pow(base, float(exp.reshape(-1)[0]))]
    return [torch.pow(base, T(exp))]


def _range(inputs, attrs):
    def scalar(v):
        if isinstance(v, np.ndarray):
            return v.reshape(-1)[0].item()
        if isinstance(v, list):
            return v[0]
        if isinstance(v, torch.Tensor):
            return v.reshape(-1)[0].item()
        return v
    start, limit, delta = (scalar(v) for v in inputs)
    floating = any(isinstance(v, np.ndarray) and v.dtype.kind == "f" for v in inputs) or any(
        isinstance(v, torch.Tensor) and v.is_floating_point() for v in inputs)
    return [torch.arange(start, limit, delta, dtype=torch.float32 if floating else torch.int64)]


def _variadic(fn):
    def op(inputs, attrs):
        out = T(inputs[0])
        for v in inputs[1:]:
            out = fn(out, T(v))
        return [out]
    return op


def _identity(inputs, attrs):
    return [inputs[0]]


OPS = {
    "Add": _binary(torch.add, lambda a, b: a + b),
    "Sub": _binary(torch.sub, lambda a, b: a - b),
    "Mul": _binary(torch.mul, lambda a, b: a * b),
    "Div": _binary(lambda a, b: torch.div(a, b, rounding_mode="trunc") if not a.is_floating_point() else a / b,
                   lambda a, b: a // b),
    "Pow": _pow,
    "MatMul": lambda inputs, attrs: [torch.matmul(T(inputs[0]), T(inputs[1]))],
    "Gemm": _gemm,
    "Conv": _conv,
    "MaxPool": _maxpool,
    "AveragePool": _avgpool,
    "GlobalAveragePool": _global_avgpool,
    "BatchNormalization": _batchnorm,
    "LayerNormalization": _layernorm,
    "Relu": _unary(torch.relu),
    "LeakyRelu": lambda inputs, attrs: [F.leaky_relu(T(inputs[0]), attrs.get("alpha", 0.01))],
    "Tanh": _unary(torch.tanh),
    "Sigmoid": _unary(torch.sigmoid),
    "Exp": _unary(torch.exp),
    "Log": _unary(torch.log),
    "Sqrt": _unary(torch.sqrt),
    "Neg": _unary(torch.neg),
    "Abs": _unary(torch.abs),
    "Erf": _unary(torch.erf),
    "Reciprocal": _unary(torch.reciprocal),
    "Softmax": _softmax(torch.softmax),
    "LogSoftmax": _softmax(torch.log_softmax),
    "Flatten": _flatten,
    "Reshape": _reshape,
    "Transpose": _transpose,
    "Concat": _concat,
    "Gather": _gather,
    "Shape": _shape,
    "Unsqueeze": _unsqueeze,
    "Squeeze": _squeeze,
    "Slice": _slice,
    "Cast": _cast,
    "ConstantOfShape": _constant_of_shape,
    "Expand": _expand,
    "Where": _where,
    "Equal": _compare(torch.eq, operator.eq),
    "Less": _compare(torch.lt, operator.lt),
    "Greater": _compare(torch.gt, operator.gt),
    "Not": _unary(torch.logical_not),
    "GatherElements": _gather_elements,
    "ReduceMean": _reduce(torch.mean),
    "ReduceSum": _reduce(torch.sum),
    "ReduceMax": _reduce(torch.amax),
    "ReduceMin": _reduce(torch.amin),
    "Dropout": _dropout,
    "Identity": _identity,
    "Clip": _clip,
    "Split": _split,
    "LSTM": _lstm,
    "Range": _range,
    "PRelu": _prelu,
    "Elu": lambda inputs, attrs: [F.elu(T(inputs[0]), attrs.get("alpha", 1.0))],
    "Selu": lambda inputs, attrs: [attrs.get("gamma", 1.0507009873554805) * torch.where(
        T(inputs[0]) > 0, T(inputs[0]), attrs.get("alpha", 1.6732632423543772) * torch.expm1(T(inputs[0])))],
    "Softplus": _unary(F.softplus),
    "HardSigmoid": lambda inputs, attrs: [torch.clamp(attrs.get("alpha", 0.2) * T(inputs[0]) + attrs.get("beta", 0.5), 0, 1)],
    "Max": _variadic(torch.maximum),
    "Min": _variadic(torch.minimum),
    "Sum": _variadic(torch.add),
    "Tile": _tile,
    "Pad": _pad,
    "InstanceNormalization": _instance_norm,
    "ConvTranspose": _conv_transpose,
}
