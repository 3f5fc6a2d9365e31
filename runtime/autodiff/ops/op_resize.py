"""Resize (antialias, axes, coordinate_transformation_mode, cubic_coeff_a, exclude_outside,
extrapolation_value, keep_aspect_ratio_policy=stretch, mode nearest/linear/cubic, nearest_mode).

For fixed scales or sizes the op is linear in X and separable: along each resized axis it is a
matrix M [out, in] (a gather for nearest, interpolation weights for linear and cubic). The rule
gets each M at build time by resizing an identity basis along that axis with the node's own
attributes (onnx.reference), then dX = dY contracted with M along each axis (Transpose, MatMul):
the adjoint. Axes with scale 1 are the identity (except tf_crop_and_resize) and may be dynamic;
with constant scales/sizes and a symbolic dim, M is computed as below. Scales or sizes known only at run
time (a U-Net's upsampling to its skip connection's size): M is computed in the graph, the node's
own Resize of an identity [in, in] (EyeLike) by that axis's scale or size, for every axis whose
output dim is not provably its input's. Values extrapolated outside the crop (tf_crop_and_resize)
are constants: no gradient; that mode with run-time scales or sizes is refused."""
import numpy as np
from onnx import helper, numpy_helper

from onnxforge.runtime.autodiff.ops._common import attr

OP_TYPE = "Resize"
NON_DIFFERENTIABLE_INPUTS = (1, 2, 3)
SETTINGS_INPUTS = (1, 2, 3)  # float initialisers here are settings: read at build time


def check(node, info):
    if attr(node, "keep_aspect_ratio_policy", "stretch") != "stretch":
        return "keep_aspect_ratio_policy other than stretch is not covered"
    if info.get(node.input[0], (None, None))[1] is None:
        return "needs the rank of the input, which shape inference could not find"
    return None


def _input(ctx, node, i):
    if len(node.input) <= i or not node.input[i]:
        return None
    v = ctx.value(node.input[i])
    if v is None:
        ctx.refuse(f"input {i} ({node.input[i]!r}) is only known at run time; the gradient needs it as a constant")
    return np.asarray(v)


def _runtime(ctx, node):
    """Scales or sizes given but known only at run time."""
    return any(len(node.input) > i and node.input[i] and ctx.value(node.input[i]) is None for i in (2, 3))


def _runtime_matrix(ctx, node, x, a, k, dtype):
    """M [out, in] along axis ``a`` (the ``k``-th of the node's axes) computed in the graph: the
    node's own Resize of an identity [in, in] along its last axis, by the run-time scale or size."""
    keep = {"antialias", "coordinate_transformation_mode", "cubic_coeff_a", "exclude_outside", "mode",
            "nearest_mode"}
    attrs = {at.name: helper.get_attribute_value(at) for at in node.attribute if at.name in keep}
    length = ctx.shape(x, a, a + 1)
    eye = ctx.op("EyeLike", [ctx.op("ConstantOfShape", [ctx.op("Concat", [length, length], axis=0)],
                                    value=numpy_helper.from_array(np.zeros(1, dtype)))])
    pick = ctx.ints([k])
    if len(node.input) > 3 and node.input[3]:
        size = ctx.op("Gather", [node.input[3], pick])
        inputs = [eye, "", "", ctx.op("Concat", [length, size], axis=0)]
    else:
        scale = ctx.op("Gather", [node.input[2], pick])
        inputs = [eye, "", ctx.op("Concat", [ctx.const(np.ones(1, np.float32)), scale], axis=0)]
    return ctx.op("Transpose", [ctx.op("Resize", inputs, **attrs)], perm=[1, 0])


def _resized_at_run_time(ctx, node, x, rank):
    """``(axis, index among the node's axes)`` of every axis that may be resized: all the node's
    axes but those whose output dim provably equals the input's."""
    axes = attr(node, "axes")
    axes = list(range(rank)) if axes is None else [a + rank if a < 0 else a for a in axes]
    xd, yd = ctx.dims(x), ctx.dims(node.output[0]) or [None] * rank
    return [(a, k) for k, a in enumerate(axes) if xd[a] is None or xd[a] != yd[a]]


def _per_axis(ctx, node, rank):
    """``(scales or None, sizes or None, roi or None)`` as full-rank lists."""
    axes = attr(node, "axes")
    axes = list(range(rank)) if axes is None else [a + rank if a < 0 else a for a in axes]
    roi, scales, sizes = (_input(ctx, node, i) for i in (1, 2, 3))

    def full(values, fill):
        if values is None or values.size == 0:
            return None
        out = [fill] * rank
        for a, v in zip(axes, values.tolist()):
            out[a] = v
        return out
    roi_full = None
    if roi is not None and roi.size:
        k = len(axes)
        starts, ends = full(roi[:k], 0.0), full(roi[k:], 1.0)
        roi_full = list(zip(starts, ends))
    return full(scales, 1.0), full(sizes, None), roi_full


def _matrix(ctx, node, length, scale, size, roi, dtype):
    """M [out, length] of the node along one axis: the resize of the rows of an identity."""
    from onnx.reference import ReferenceEvaluator

    keep = {"antialias", "coordinate_transformation_mode", "cubic_coeff_a", "exclude_outside", "mode",
            "nearest_mode"}
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute if a.name in keep}
    inputs, feeds = ["e", "", "", ""], {"e": np.eye(length, dtype=np.float64)}
    if roi is not None:
        inputs[1] = "roi"
        feeds["roi"] = np.array([0.0, roi[0], 1.0, roi[1]], np.float32)
    if scale is None:
        inputs[3] = "sizes"
        feeds["sizes"] = np.array([length, size], np.int64)
    else:
        inputs[2] = "scales"
        feeds["scales"] = np.array([1.0, scale], np.float32)
    names = [n for n in inputs if n]
    g = helper.make_graph([helper.make_node("Resize", inputs, ["y"], **attrs)], "basis",
                          [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(feeds[n].dtype), None)
                           for n in names], [helper.make_tensor_value_info("y", 11, None)])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", ctx.opset)])
    try:
        out = ReferenceEvaluator(model).run(None, {n: feeds[n] for n in names})[0]
    except Exception as exc:  # noqa: BLE001 - onnx.reference raises many kinds
        ctx.refuse(f"the interpolation along an axis could not be computed: {exc}")
    return np.ascontiguousarray(out.T, dtype=dtype)


def vjp(ctx, node, dys, need):
    x, g = node.input[0], dys[0]
    rank = ctx.need_rank(x)
    dims = ctx.dims(x)
    if _runtime(ctx, node):
        if attr(node, "coordinate_transformation_mode", "half_pixel") == "tf_crop_and_resize":
            ctx.refuse("tf_crop_and_resize with scales or sizes known only at run time is not covered")
        return [ctx.like(_contract(ctx, g, rank, [(a, _runtime_matrix(ctx, node, x, a, k, ctx.np_dtype(g)))
                                                  for a, k in _resized_at_run_time(ctx, node, x, rank)]), x)]
    scales, sizes, roi = _per_axis(ctx, node, rank)
    if scales is None and sizes is None:
        ctx.refuse("neither scales nor sizes is given")
    crop = attr(node, "coordinate_transformation_mode", "half_pixel") == "tf_crop_and_resize"
    mats = []
    for a in range(rank):
        size = None if sizes is None else sizes[a]
        same = size is None or size == dims[a] if sizes is not None else scales[a] == 1.0
        if (same and not crop) or (crop and sizes is not None and size is None):
            continue
        if not isinstance(dims[a], int):  # a symbolic dim resized by a constant scale or size
            if crop:
                ctx.refuse(f"tf_crop_and_resize along axis {a}, whose size is known only at run time, is not covered")
            axes = attr(node, "axes")
            axes = list(range(rank)) if axes is None else [b + rank if b < 0 else b for b in axes]
            mats.append((a, _runtime_matrix(ctx, node, x, a, axes.index(a), ctx.np_dtype(g))))
            continue
        mats.append((a, ctx.const(_matrix(ctx, node, dims[a], None if scales is None else scales[a], size,
                                          None if roi is None else roi[a], ctx.np_dtype(g)))))
    return [ctx.like(_contract(ctx, g, rank, mats), x)]


def _contract(ctx, g, rank, mats):
    """dY contracted with each ``(axis, M [out, in])``, last axis first."""
    out = g
    for a, m in reversed(mats):
        if a == rank - 1:
            out = ctx.op("MatMul", [out, m])
        else:
            perm = list(range(rank))
            perm[a], perm[-1] = perm[-1], perm[a]
            out = ctx.op("Transpose", [ctx.op("MatMul", [ctx.op("Transpose", [out], perm=perm), m])], perm=perm)
    if out == g:
        out = ctx.op("Identity", [g])
    return out

