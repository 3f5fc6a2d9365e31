"""PyTorch implementations of the ONNX network ops (Gemm, convolutions, pooling, normalisations,
LSTM, Pad, Tile, PRelu) for the interpreter module; the tensor ops are in :mod:`._torch_ops`."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from onnxforge.graphs.lstm_gates import onnx_to_torch
from onnxforge.runtime.convert._torch_values import T, ints


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
    reorder = onnx_to_torch  # [4H, ...] in i, o, f, c  ->  i, f, c(g), o

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


def _prelu(inputs, attrs):
    x, slope = T(inputs[0]), T(inputs[1])
    return [torch.where(x >= 0, x, x * slope)]


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
