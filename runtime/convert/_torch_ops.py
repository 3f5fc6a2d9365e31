"""PyTorch implementations of ONNX ops (opset 13 and later forms) for the interpreter module.

A value is a ``torch.Tensor`` (data), a ``numpy.ndarray`` (a constant known when the module is
built) or a ``list``/``int`` of (symbolic) integers (a shape being computed, so that
``torch.export`` sees ``x.shape[0]`` and not a number). Each op takes ``(inputs, attrs)`` and
returns a list of outputs.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from onnxforge.runtime.convert.gates import onnx_to_torch_gates

__all__ = ["OPS"]

_DTYPES = {1: torch.float32, 2: torch.uint8, 3: torch.int8, 5: torch.int16, 6: torch.int32, 7: torch.int64,
           9: torch.bool, 10: torch.float16, 11: torch.float64, 16: torch.bfloat16}


def _is_shape(v) -> bool:
    return isinstance(v, (list, int, torch.SymInt))


def T(v) -> torch.Tensor:
    """Any value as a tensor."""
    if isinstance(v, torch.Tensor):
        return v
    if isinstance(v, np.ndarray):
        return torch.from_numpy(np.array(v))
    return torch.tensor(v, dtype=torch.int64)


def ints(v) -> list:
    """A constant or shape value as a Python list of (symbolic) ints."""
    if isinstance(v, np.ndarray):
        return [int(i) for i in v.reshape(-1)]
    if isinstance(v, list):
        return v
    if isinstance(v, (int, torch.SymInt)):
        return [v]
    raise TypeError("expected a constant or a shape, got a tensor computed at run time")


def _const_or_shape(v) -> bool:
    return isinstance(v, np.ndarray) and v.dtype.kind in "iu" or _is_shape(v)


def _as_py(v):
    """A constant/shape value as Python ints (scalar or list)."""
    if isinstance(v, np.ndarray):
        return int(v) if v.ndim == 0 else [int(i) for i in v.reshape(-1)]
    return v


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


def _gemm(inputs, attrs):
    a, b = T(inputs[0]), T(inputs[1])
    c = T(inputs[2]) if len(inputs) > 2 and inputs[2] is not None else None
    alpha, beta = attrs.get("alpha", 1.0), attrs.get("beta", 1.0)
    trans_a, trans_b = attrs.get("transA", 0), attrs.get("transB", 0)
    if trans_a:
        a = a.t()
    if trans_b and alpha == 1.0 and beta == 1.0 and (c is None or c.dim() == 1):
        return [F.linear(a, b, c)]
    y = a @ (b.t() if trans_b else b)
    if alpha != 1.0:
        y = y * alpha
    if c is not None:
        y = y + (c * beta if beta != 1.0 else c)
    return [y]


def _pads_split(pads, n):
    return list(pads[:n]), list(pads[n:])


def _auto_pads(attrs, x, kernel, strides, dilations):
    """Explicit begin/end pads from ``auto_pad`` (needs static spatial sizes) or ``pads``."""
    n = len(kernel)
    mode = attrs.get("auto_pad", "NOTSET")
    if isinstance(mode, bytes):
        mode = mode.decode()
    if mode in ("NOTSET", ""):
        pads = attrs.get("pads", [0] * 2 * n)
        return _pads_split(pads, n)
    if mode == "VALID":
        return [0] * n, [0] * n
    begin, end = [], []
    for i in range(n):
        size = int(x.shape[2 + i])
        out = -(-size // strides[i])
        total = max(0, (out - 1) * strides[i] + (kernel[i] - 1) * dilations[i] + 1 - size)
        small, big = total // 2, total - total // 2
        begin.append(small if mode == "SAME_UPPER" else big)
        end.append(big if mode == "SAME_UPPER" else small)
    return begin, end


def _pad_input(x, begin, end, value=0.0):
    if begin == end:
        return x, begin
    flat = []
    for b, e in zip(reversed(begin), reversed(end)):
        flat += [b, e]
    return F.pad(x, flat, value=value), [0] * len(begin)


def _conv(inputs, attrs):
    x, w = T(inputs[0]), T(inputs[1])
    b = T(inputs[2]) if len(inputs) > 2 and inputs[2] is not None else None
    n = w.dim() - 2
    kernel = attrs.get("kernel_shape", list(w.shape[2:]))
    strides = attrs.get("strides", [1] * n)
    dilations = attrs.get("dilations", [1] * n)
    begin, end = _auto_pads(attrs, x, kernel, strides, dilations)
    x, padding = _pad_input(x, begin, end)
    fn = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[n]
    return [fn(x, w, b, stride=strides, padding=padding, dilation=dilations, groups=attrs.get("group", 1))]


def _maxpool(inputs, attrs):
    x = T(inputs[0])
    kernel = attrs["kernel_shape"]
    n = len(kernel)
    strides = attrs.get("strides", [1] * n)
    dilations = attrs.get("dilations", [1] * n)
    begin, end = _auto_pads(attrs, x, kernel, strides, dilations)
    x, padding = _pad_input(x, begin, end, value=-math.inf)
    fn = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}[n]
    return [fn(x, kernel, strides, padding, dilations, ceil_mode=bool(attrs.get("ceil_mode", 0)))]


def _avgpool(inputs, attrs):
    x = T(inputs[0])
    kernel = attrs["kernel_shape"]
    n = len(kernel)
    strides = attrs.get("strides", [1] * n)
    begin, end = _auto_pads(attrs, x, kernel, strides, [1] * n)
    include = bool(attrs.get("count_include_pad", 0))
    if begin != end:
        if not include:
            raise TypeError("AveragePool with unequal begin/end pads and count_include_pad=0")
        x, begin = _pad_input(x, begin, end)
    fn = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}[n]
    return [fn(x, kernel, strides, begin, ceil_mode=bool(attrs.get("ceil_mode", 0)), count_include_pad=include)]


def _global_avgpool(inputs, attrs):
    x = T(inputs[0])
    return [x.mean(dim=tuple(range(2, x.dim())), keepdim=True)]


def _batchnorm(inputs, attrs):
    x, scale, bias, mean, var = (T(v) for v in inputs[:5])
    return [F.batch_norm(x, mean, var, scale, bias, False, 0.0, attrs.get("epsilon", 1e-5))]


def _layernorm(inputs, attrs):
    x, scale = T(inputs[0]), T(inputs[1])
    bias = T(inputs[2]) if len(inputs) > 2 and inputs[2] is not None else None
    axis = attrs.get("axis", -1) % x.dim()
    return [F.layer_norm(x, list(x.shape[axis:]), scale, bias, attrs.get("epsilon", 1e-5))]


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


def _equal(inputs, attrs):
    a, b = inputs
    if _is_shape(a) or _is_shape(b):
        return [np.array(_elementwise(lambda x, y: bool(x == y), a, b))]
    return [torch.eq(T(a), T(b))]


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


def _lstm(inputs, attrs):
    """ONNX LSTM (gates i, o, f, c) through ``torch.lstm`` (gates i, f, g, o)."""
    x, w, r = T(inputs[0]), T(inputs[1]), T(inputs[2])
    get = lambda i: inputs[i] if len(inputs) > i and inputs[i] is not None else None  # noqa: E731
    b, h0, c0 = get(3), get(5), get(6)
    hidden = attrs["hidden_size"]
    dirs = w.shape[0]
    if attrs.get("layout", 0):
        x = x.transpose(0, 1)
    batch = x.shape[1]
    layout = attrs.get("layout", 0)

    def state(v):  # [dirs, N, H] (layout 0) or [N, dirs, H] (layout 1) -> torch's [dirs, N, H]
        if v is None:
            return x.new_zeros(dirs, batch, hidden)
        v = T(v)
        return (v.transpose(0, 1) if layout else v).contiguous()

    x = x.contiguous()
    h0, c0 = state(h0), state(c0)
    for name, v in (("initial_h", h0), ("initial_c", c0)):
        if v.dim() != 3 or v.shape[0] != dirs or v.shape[2] != hidden:  # torch.lstm does not check: it crashes
            raise ValueError(f"LSTM {name} has shape {list(v.shape)}; expected [{dirs}, N, {hidden}]")
    if w.dim() != 3 or w.shape[1] != 4 * hidden or r.shape[-1] != hidden:
        raise ValueError(f"LSTM W/R have shapes {list(w.shape)}/{list(r.shape)} for hidden_size {hidden}")
    def reorder(m):  # [4H, ...] in i, o, f, c  ->  i, f, c(g), o
        return onnx_to_torch_gates(m, hidden)

    params = []
    for d in range(dirs):
        params += [reorder(w[d]), reorder(r[d])]
        if b is not None:
            bd = T(b)[d]
            params += [reorder(bd[: 4 * hidden]), reorder(bd[4 * hidden:])]
    y, hn, cn = torch.lstm(x, (h0, c0), params, b is not None, 1, 0.0, False, dirs == 2, False)
    y = y.reshape(y.shape[0], batch, dirs, hidden).transpose(1, 2)  # [T, dirs, N, H]
    if attrs.get("layout", 0):
        y, hn, cn = y.permute(2, 0, 1, 3), hn.transpose(0, 1), cn.transpose(0, 1)
    return [y, hn, cn]


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


def _prelu(inputs, attrs):
    x, slope = T(inputs[0]), T(inputs[1])
    return [torch.where(x >= 0, x, x * slope)]


def _variadic(fn):
    def op(inputs, attrs):
        out = T(inputs[0])
        for v in inputs[1:]:
            out = fn(out, T(v))
        return [out]
    return op


def _tile(inputs, attrs):
    return [T(inputs[0]).repeat(*ints(inputs[1]))]


def _pad(inputs, attrs):
    x = T(inputs[0])
    pads = ints(inputs[1]) if len(inputs) > 1 and inputs[1] is not None else attrs.get("pads")
    value = inputs[2] if len(inputs) > 2 and inputs[2] is not None else attrs.get("value", 0.0)
    value = float(np.asarray(value).reshape(-1)[0]) if not isinstance(value, float) else value
    if len(inputs) > 3 and inputs[3] is not None:
        raise TypeError("Pad with axes")
    n = x.dim()
    flat = []
    for i in reversed(range(n)):
        flat += [pads[i], pads[i + n]]
    while len(flat) > 2 and flat[-2:] == [0, 0]:  # torch pads the last dims first; drop leading unpadded dims
        flat = flat[:-2]
    mode = {"constant": "constant", "reflect": "reflect", "edge": "replicate", "wrap": "circular"}[attrs.get("mode", "constant")]
    return [F.pad(x, flat, mode=mode, value=value) if mode == "constant" else F.pad(x, flat, mode=mode)]


def _instance_norm(inputs, attrs):
    x, scale, bias = (T(v) for v in inputs)
    return [F.instance_norm(x, weight=scale, bias=bias, eps=attrs.get("epsilon", 1e-5))]


def _conv_transpose(inputs, attrs):
    x, w = T(inputs[0]), T(inputs[1])
    b = T(inputs[2]) if len(inputs) > 2 and inputs[2] is not None else None
    n = w.dim() - 2
    strides = attrs.get("strides", [1] * n)
    dilations = attrs.get("dilations", [1] * n)
    pads = attrs.get("pads", [0] * 2 * n)
    if "output_shape" in attrs or attrs.get("auto_pad", "NOTSET") not in ("NOTSET", ""):
        raise TypeError("ConvTranspose with output_shape or auto_pad")
    begin, end = pads[:n], pads[n:]
    extra = [e - bg for bg, e in zip(begin, end)]
    if any(e > 0 for e in extra):
        raise TypeError("ConvTranspose with larger end pads")
    fn = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}[n]
    out_pad = [op - e for op, e in zip(attrs.get("output_padding", [0] * n), extra)]
    return [fn(x, w, b, stride=strides, padding=begin, output_padding=out_pad, groups=attrs.get("group", 1),
               dilation=dilations)]


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
    "Equal": _equal,
    "ReduceMean": _reduce(torch.mean),
    "ReduceSum": _reduce(torch.sum),
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
