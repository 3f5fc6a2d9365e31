"""The rules users asked for after the first set (AveragePool ceil_mode, ConvTranspose with
output_shape/auto_pad, Resize, GRU) against PyTorch autograd on the same values."""

from __future__ import annotations

import numpy as np
import onnxruntime
import pytest
import torch
import torch.nn.functional as F

from _autodiff_torch import check_op

pytestmark = pytest.mark.torch
R = np.random.default_rng(17)


def f32(*shape):
    return R.uniform(-1, 1, shape).astype(np.float32)


@pytest.mark.parametrize("xs,k,st,p,cip", [
    ((1, 2, 7, 7), [2, 2], [2, 2], [0, 0], 0),
    ((2, 2, 8, 7), [3, 3], [2, 2], [0, 0], 0),
    ((2, 3, 8, 8), [3, 3], [2, 2], [1, 1], 0),
    ((2, 3, 8, 7), [3, 2], [2, 1], [1, 1], 1),
    ((1, 2, 8, 9), [3, 3], [2, 3], [1, 0], 1),
])
@pytest.mark.parametrize("dynamic", [False, "batch"], ids=["static", "dynbatch"])
def test_average_pool_ceil_mode(xs, k, st, p, cip, dynamic):
    # ONNX Runtime before 1.20 divides a window reaching past the padding by a different count
    # with count_include_pad=1 (1.31, onnx.reference and PyTorch agree): the rule follows the spec
    old_ort = tuple(int(v) for v in onnxruntime.__version__.split(".")[:2]) < (1, 20)
    check_op("AveragePool", {"X": f32(*xs)},
             lambda x: F.avg_pool2d(x, k, st, p, ceil_mode=True, count_include_pad=bool(cip)),
             attrs=dict(kernel_shape=k, strides=st, pads=p + p, ceil_mode=1, count_include_pad=cip), dynamic=dynamic,
             reference_only=bool(cip) and old_ort)


def test_average_pool_ceil_mode_where_runtimes_disagree_is_refused():
    """L=5, k=2, s=2, pads 1: ORT 1.19 gives 4 outputs, onnx.reference and PyTorch 3."""
    from _autodiff_check import single_op_model
    from onnxforge.runtime.autodiff import UnsupportedOpError, gradient_model

    m = single_op_model("AveragePool", {"X": f32(1, 2, 5, 5)}, kernel_shape=[2, 2], strides=[2, 2],
                        pads=[1, 1, 1, 1], ceil_mode=1)
    with pytest.raises(UnsupportedOpError, match="last window would start in the end padding"):
        gradient_model(m, ["X"], "y0")


@pytest.mark.parametrize("attrs,pads", [
    (dict(auto_pad="SAME_UPPER", strides=[2, 2]), ([0, 1], [1, 1])),      # total padding (1, 2); natural 7 x 10
    (dict(auto_pad="SAME_LOWER", strides=[2, 2]), ([1, 1], [0, 1])),
    (dict(output_shape=[6, 7], strides=[2, 2]), ([1, 2], [0, 1])),        # total (1, 3): the extra one first
    (dict(output_shape=[5, 9], strides=[2, 2], output_padding=[0, 1]), ([1, 1], [1, 1])),
    (dict(auto_pad="VALID", strides=[1, 2]), ([0, 0], [0, 0])),
])
@pytest.mark.parametrize("dynamic", [False, "batch"], ids=["static", "dynbatch"])
def test_conv_transpose_output_shape_and_auto_pad(attrs, pads, dynamic):
    """PyTorch's twin: the full transposed convolution cut by the pads the spec derives."""
    (top, left), (bottom, right) = pads
    out_pad = attrs.get("output_padding", [0, 0])

    def twin(x, w, b):
        y = F.conv_transpose2d(x, w, b, attrs["strides"], 0, out_pad)
        return y[:, :, top:y.shape[2] - bottom, left:y.shape[3] - right]
    # onnx.reference cannot run ConvTranspose with output_shape: ONNX Runtime alone runs those
    check_op("ConvTranspose", {"X": f32(2, 3, 3, 4), "W": f32(3, 2, 3, 4), "B": f32(2)}, twin,
             attrs=dict(attrs), dynamic=dynamic, both="output_shape" not in attrs)


def test_conv_transpose_output_shape_too_large_is_refused():
    from _autodiff_check import single_op_model
    from onnxforge.runtime.autodiff import UnsupportedOpError, gradient_model

    m = single_op_model("ConvTranspose", {"X": f32(1, 1, 3, 3), "W": f32(1, 1, 3, 3)}, strides=[2, 2],
                        output_shape=[8, 8])
    with pytest.raises(UnsupportedOpError, match="larger than the natural output"):
        gradient_model(m, ["W"], "y0")


def _resize_case(x, mode, ctm, scales=None, sizes=None, **attrs):
    ins = {"X": x, "roi": np.zeros(0, np.float32)}
    if scales is not None:
        ins["scales"] = np.array(scales, np.float32)
    else:
        ins[" "] = None
        ins["sizes"] = np.array(sizes, np.int64)
    consts = [k for k in ("roi", "scales", "sizes") if k in ins]
    return ins, consts, dict(mode=mode, coordinate_transformation_mode=ctm, **attrs)


_MODES = [
    ("nearest", "asymmetric", "nearest", None, dict(nearest_mode="floor")),
    ("linear", "half_pixel", "bilinear", False, {}),
    ("linear", "pytorch_half_pixel", "bilinear", False, {}),
    ("linear", "align_corners", "bilinear", True, {}),
    ("cubic", "half_pixel", "bicubic", False, dict(cubic_coeff_a=-0.75)),
]
# PyTorch's nearest with sizes maps by in/out, ONNX's asymmetric by the scale: no twin there (the
# central-difference tests cover nearest with sizes); sizes of every axis fix the batch
RESIZE = [pytest.param(*m, how, dyn, id=f"{m[0]}-{m[1]}-{how}-{'dyn' if dyn else 'static'}")
          for m in _MODES for how in ("up-scales", "down-sizes", "mixed-sizes") for dyn in (False, "batch")
          if not (m[0] == "nearest" and how != "up-scales") and not (dyn and how == "down-sizes")]


@pytest.mark.parametrize("mode,ctm,torch_mode,align,extra,how,dynamic", RESIZE)
def test_resize_matches_torch(mode, ctm, torch_mode, align, extra, how, dynamic):
    x = f32(2, 3, 5, 4)
    if how == "up-scales":
        ins, consts, attrs = _resize_case(x, mode, ctm, scales=[1, 1, 2, 3], **extra)
        out = (10, 12)
    elif how == "down-sizes":  # all axes given (the batch must then be static)
        ins, consts, attrs = _resize_case(x, mode, ctm, sizes=[2, 3, 3, 2], **extra)
        out = (3, 2)
    else:  # opset 18's axes: only the spatial ones
        ins, consts, attrs = _resize_case(x, mode, ctm, sizes=[7, 3], axes=[2, 3], **extra)
        out = (7, 3)

    def twin(x, *_):
        kw = {} if align is None else dict(align_corners=align)
        return F.interpolate(x, size=out, mode=torch_mode, **kw)
    check_op("Resize", ins, twin, consts=consts, attrs=attrs, dynamic=dynamic, opset=18 if "axes" in attrs else 17)


def _conv_twin(strides, pads, dilations):
    def f(x, w, b=None):
        n = x.dim() - 2
        pad = [v for i in reversed(range(n)) for v in (pads[i], pads[i + n])]
        conv = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[n]
        return conv(F.pad(x, pad), w, b, strides, 0, dilations)
    return f


@pytest.mark.parametrize("xs,ws,st,pd,dl", [
    ((3, 8, 5, 5), (6, 8, 3, 3), [1, 1], [1, 1, 1, 1], [1, 1]),
    ((2, 9, 7, 8), (4, 9, 3, 2), [2, 3], [1, 0, 2, 1], [1, 1]),      # strides, asymmetric pads, leftover
    ((2, 8, 9, 9), (5, 8, 2, 3), [2, 1], [0, 1, 1, 0], [3, 2]),      # dilations
    ((2, 12, 11), (5, 12, 4), [2], [1, 2], [2]),                     # 1-D
    ((1, 8, 4, 5, 4), (3, 8, 2, 3, 2), [1, 2, 1], [0, 1, 1, 1, 0, 0], [1, 1, 2]),  # 3-D
])
@pytest.mark.parametrize("dynamic", [False, "batch"], ids=["static", "dynbatch"])
def test_conv_weight_gradient_by_patches_matches_torch(xs, ws, st, pd, dl, dynamic):
    """At 8 or more input channels the weight gradient is one MatMul of dY by the input's patches."""
    ins = {"X": f32(*xs), "W": f32(*ws), "B": f32(ws[0])}
    g = check_op("Conv", ins, _conv_twin(st, pd, dl), attrs=dict(strides=st, pads=pd, dilations=dl), dynamic=dynamic)
    grad_ops = [n.op_type for n in g.graph.node if n.name.startswith("grad/")]
    assert "MatMul" in grad_ops and grad_ops.count("Conv") == 0  # dX is a ConvTranspose, dW patches


def test_conv_transpose_weight_gradient_by_patches_matches_torch():
    ins = {"X": f32(2, 3, 4, 4), "W": f32(3, 8, 3, 3), "B": f32(8)}
    g = check_op("ConvTranspose", ins, lambda x, w, b: F.conv_transpose2d(x, w, b, 2, 1, 1),
                 attrs=dict(strides=[2, 2], pads=[1, 1, 1, 1], output_padding=[1, 1]))
    assert "MatMul" in [n.op_type for n in g.graph.node if n.name.startswith("grad/")]


@pytest.mark.parametrize("axis", [0, 1, 2])  # onnx.reference's GatherElements mis-slices a negative axis
def test_gather_elements_matches_torch(axis):
    data = f32(3, 4, 2)
    shape = (5, 4, 2) if axis == 0 else (3, 6, 2) if axis == 1 else (3, 4, 3)
    size = data.shape[axis]
    idx = R.integers(-size, size, shape).astype(np.int64)
    check_op("GatherElements", {"D": data, "I": idx}, lambda d, i: torch.gather(d, axis, i % size), consts=["I"],
             attrs=dict(axis=axis))


GATHER_INDICES = {"scalar": 2, "scalar-negative": -1, "vector-negative-duplicates": [-1, 0, 2, -1],
                  "matrix": [[1, -2], [0, 0]]}


@pytest.mark.parametrize("dynamic", [False, True], ids=["static", "dynamic"])
@pytest.mark.parametrize("runtime", [False, True], ids=["const-index", "fed-index"])
@pytest.mark.parametrize("form", list(GATHER_INDICES))
@pytest.mark.parametrize("axis", [-3, -2, -1, 0, 1, 2])
def test_gather_matches_torch(axis, form, runtime, dynamic):
    """Every axis (negative ones too) with scalar (0-d: the gathered axis dropped, as in
    ``h[-1]``), negative and duplicated indices, constant or known only at run time."""
    data = f32(3, 4, 3)
    idx = np.array(GATHER_INDICES[form], np.int64)
    check_op("Gather", {"D": data, "I": idx}, lambda d, i: torch.index_select(
        d, axis, (i % d.shape[axis]).reshape(-1)).reshape(d.shape[:axis % 3] + i.shape + d.shape[axis % 3 + 1:]),
        consts=() if runtime else ["I"], attrs=dict(axis=axis), dynamic=dynamic)


@pytest.mark.parametrize("pads,runtime", [([0, 1, 2, 0, 0, 1], False), ([1, -1, 0, 2, 1, -2], False),
                                          ([0, 0, 1, 0, 0, 2], True), ([1, -1, 0, 2, 1, -2], True)])
def test_pad_matches_torch(pads, runtime):
    """Constant mode, cropping (negative pads) too; pads as a constant or known only at run time."""
    r = 3
    torch_pads = [v for i in reversed(range(r)) for v in (pads[i], pads[i + r])]
    ins = {"X": f32(3, 4, 5), "p": np.array(pads, np.int64), "v": np.array(0.5, np.float32)}
    both = min(pads) >= 0  # onnx.reference's Pad (numpy.pad) refuses negative pads: ORT alone there
    check_op("Pad", ins, lambda x, p, v: _pad_twin(x, torch_pads, v), consts=() if runtime else ["p"], both=both)


def _pad_twin(x, torch_pads, v):
    """F.pad with a differentiable constant: pad with zeros, add v times the padded positions."""
    ones = torch.ones_like(x)
    inside = F.pad(ones, torch_pads)
    return F.pad(x, torch_pads) + v * (1 - inside)
