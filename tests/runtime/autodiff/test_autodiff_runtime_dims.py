"""Dims known only at run time (symbolic dims, scales/sizes/axes computed in the graph): the
rules compute them in the graph instead of refusing. Central differences in float64 on models
whose every dim is symbolic, and the gradient model run by ONNX Runtime equal to onnx.reference."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from _autodiff_check import assert_close, fd_check, gradients, run_ort, run_ref, single_op_model
from onnxforge.runtime.autodiff import gradient_model

R = np.random.default_rng(31)


def f64(*shape):
    return R.standard_normal(shape)


def _declared(model):
    """The output declared with the first input's type and rank when inference gave none."""
    out = model.graph.output[0]
    if not out.type.tensor_type.HasField("shape"):
        x = model.graph.input[0].type.tensor_type
        out.CopyFrom(helper.make_tensor_value_info(out.name, x.elem_type, [None] * len(x.shape.dim)))
    return model


def symbolic_fd(op, inputs, wrt, consts=(), opset=18, **attrs):
    """``op`` with every input dim symbolic: central differences (float64) and ORT vs reference (float32)."""
    model = _declared(single_op_model(op, inputs, opset=opset, dynamic=True, const_inputs=dict.fromkeys(consts),
                                      **attrs))
    for init in model.graph.initializer:
        init.CopyFrom(numpy_helper.from_array(np.asarray(inputs[init.name]), init.name))
    feeds = {k: v for k, v in inputs.items() if k not in consts and k.strip()}
    fd_check(model, feeds, wrt, "y0", rng=R, what=op)
    f32 = {k: v.astype(np.float32) if v.dtype.kind == "f" else v for k, v in feeds.items()}
    m32 = _declared(single_op_model(op, {k: (v.astype(np.float32) if v.dtype.kind == "f" else v)
                                         for k, v in inputs.items()},
                                    opset=opset, dynamic=True, const_inputs=dict.fromkeys(consts), **attrs))
    gradients(m32, wrt, "y0", f32, tol=1e-4)  # ORT and onnx.reference agree in float32


@pytest.mark.parametrize("group,strides,pads", [(1, [2, 2], [1, 0, 0, 1]), (2, [3, 2], [0, 1, 1, 0]),
                                                (1, [2, 3], [0, 0, 0, 0])])
def test_strided_conv_with_symbolic_spatial_dims(group, strides, pads):
    """7x6 input, strides leave trailing positions no window reaches: restored by a run-time Pad."""
    symbolic_fd("Conv", {"X": f64(2, 4, 7, 6), "W": f64(3 * group, 4 // group, 3, 2), "B": f64(3 * group)},
                ["X", "W", "B"], group=group, strides=strides, pads=pads, kernel_shape=[3, 2])


def test_strided_conv1d_and_pools_with_symbolic_dims():
    symbolic_fd("Conv", {"X": f64(2, 3, 9), "W": f64(2, 3, 3)}, ["X", "W"], strides=[2], dilations=[2], kernel_shape=[3])
    symbolic_fd("AveragePool", {"X": f64(2, 3, 7, 6)}, ["X"], kernel_shape=[3, 2], strides=[2, 2],
                pads=[1, 0, 1, 0], count_include_pad=0)
    symbolic_fd("AveragePool", {"X": f64(2, 3, 7, 6)}, ["X"], kernel_shape=[2, 2], strides=[2, 2])
    symbolic_fd("MaxPool", {"X": f64(2, 3, 7, 6)}, ["X"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])


def _sized(mode, ctm, rank, axes=None, elem=TensorProto.DOUBLE):
    """Resize of an input with symbolic dims to ``sizes``, a graph input (run-time values)."""
    x = helper.make_tensor_value_info("X", elem, [f"d{i}" for i in range(rank)])
    sizes = helper.make_tensor_value_info("sizes", TensorProto.INT64, [rank if axes is None else len(axes)])
    node = helper.make_node("Resize", ["X", "", "", "sizes"], ["y"], mode=mode, coordinate_transformation_mode=ctm,
                            axes=axes)
    g = helper.make_graph([node], "r", [x, sizes], [helper.make_tensor_value_info("y", elem,
                                                                                   [None] * rank)])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)])
    m.ir_version = 8
    return m


@pytest.mark.parametrize("mode,ctm", [("nearest", "asymmetric"), ("linear", "half_pixel"),
                                      ("linear", "align_corners"), ("cubic", "pytorch_half_pixel")])
def test_resize_with_sizes_known_only_at_run_time(mode, ctm):
    """A U-Net's decoder upsamples to its skip connection's size: sizes is a graph input here."""
    feeds = {"X": f64(1, 2, 3, 4), "sizes": np.array([1, 2, 5, 7], np.int64)}
    m = _sized(mode, ctm, 4)
    fd_check(m, feeds, ["X"], "y", rng=R)
    g = gradient_model(_sized(mode, ctm, 4, elem=TensorProto.FLOAT), ["X"], "y")  # ORT has no double Resize
    feeds["X"] = feeds["X"].astype(np.float32)
    assert_close(run_ort(g, feeds)["X_grad"], run_ref(g, feeds)["X_grad"], 1e-5, what="resize ORT vs reference")


def test_resize_with_axes_and_sizes_known_only_at_run_time():
    feeds = {"X": f64(2, 3, 4), "sizes": np.array([6, 2], np.int64)}
    fd_check(_sized("linear", "half_pixel", 3, axes=[2, 1]), feeds, ["X"], "y", rng=R)


def _resize(scales_input: bool, dims):
    x = helper.make_tensor_value_info("X", TensorProto.FLOAT, dims)
    inputs = [x] + ([helper.make_tensor_value_info("s", TensorProto.FLOAT, [4])] if scales_input else [])
    inits = [] if scales_input else [numpy_helper.from_array(np.array([1, 1, 2, 1.5], np.float32), "s")]
    g = helper.make_graph([helper.make_node("Resize", ["X", "", "s"], ["y"], mode="linear")], "r", inputs,
                          [helper.make_value_info("y", onnx.TypeProto())], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)])
    m.ir_version = 8
    m.graph.output[0].CopyFrom(onnx.shape_inference.infer_shapes(m).graph.output[0])
    return m


def test_resize_with_scales_at_run_time_or_symbolic_dims_equals_the_constant_form():
    """Run-time scales, and constant scales over symbolic dims, give the gradient of the constant
    form over static dims (itself checked against PyTorch and central differences)."""
    x = R.standard_normal((2, 3, 4, 6)).astype(np.float32)
    s = np.array([1, 1, 2, 1.5], np.float32)
    want = run_ort(gradient_model(_resize(False, [2, 3, 4, 6]), ["X"], "y"), {"X": x})["X_grad"]
    for scales_input, dims in ((True, ["N", "C", "H", "W"]), (False, ["N", "C", "H", "W"]), (True, [2, 3, 4, 6])):
        g = gradient_model(_resize(scales_input, dims), ["X"], "y")
        onnx.checker.check_model(g, full_check=True)
        feeds = {"X": x, "s": s} if scales_input else {"X": x}
        for run in (run_ort, run_ref):
            assert_close(run(g, feeds)["X_grad"], want, 1e-5, what=f"resize {scales_input} {dims} {run.__name__}")


def test_pad_with_axes_known_only_at_run_time():
    inputs = {"X": f64(2, 3, 4), "pads": np.array([1, 0, 2, 1], np.int64), "c": np.array(0.5),
              "axes": np.array([-1, 1], np.int64)}
    symbolic_fd("Pad", inputs, ["X", "c"])


def test_gather_on_a_negative_axis_of_a_tensor_of_unknown_rank():
    """The data comes out of a Reshape to a shape read at run time: no rank at build time."""
    nodes = [helper.make_node("Reshape", ["x", "shape"], ["r"]),
             helper.make_node("Gather", ["r", "idx"], ["y"], axis=-2)]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.DOUBLE, ["N", 12]),
                                       helper.make_tensor_value_info("shape", TensorProto.INT64, ["k"]),
                                       helper.make_tensor_value_info("idx", TensorProto.INT64, ["i", "j"])],
                          [helper.make_tensor_value_info("y", TensorProto.DOUBLE, [None] * 4)])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)])
    m.ir_version = 8
    feeds = {"x": f64(2, 12), "shape": np.array([2, 3, 4], np.int64), "idx": np.array([[2, 0], [-1, 2]], np.int64)}
    fd_check(m, feeds, ["x"], "y", rng=R)


def ort_fd(op, inputs, wrt, eps=1e-6, tol=1e-6, **attrs):
    """Central differences of ``op`` (every dim symbolic) run by ONNX Runtime in float64, against
    the gradient model run by ONNX Runtime: for pools with auto_pad SAME, whose forward
    onnx.reference gets wrong (one output row short, or a negative pad)."""
    m = _declared(single_op_model(op, inputs, opset=18, dynamic=True, **attrs))
    dy = R.standard_normal(run_ort(m, inputs)["y0"].shape).astype(inputs[wrt[0]].dtype)
    got = run_ort(gradient_model(m, wrt, "y0", seed="dY"), {**inputs, "dY": dy})
    for w in wrt:
        num = np.zeros_like(inputs[w])
        for idx in np.ndindex(*inputs[w].shape):
            vals = []
            for sign in (1, -1):
                x = inputs[w].copy()
                x[idx] += sign * eps
                vals.append(float(np.sum(run_ort(m, {**inputs, w: x})["y0"] * dy)))
            num[idx] = (vals[0] - vals[1]) / (2 * eps)
        assert_close(got[f"{w}_grad"], num, tol, what=f"{op} d{w} (central differences, ONNX Runtime)")


@pytest.mark.parametrize("auto", ["SAME_UPPER", "SAME_LOWER"])
def test_auto_pad_same_over_symbolic_spatial_dims(auto):
    """The pads SAME gives depend on the input size: computed at run time (TensorFlow exports)."""
    symbolic_fd("Conv", {"X": f64(2, 4, 7, 6), "W": f64(4, 2, 3, 2), "B": f64(4)}, ["X", "W", "B"], group=2,
                strides=[2, 3], kernel_shape=[3, 2], auto_pad=auto)
    ort_fd("MaxPool", {"X": f64(2, 3, 7, 6)}, ["X"], kernel_shape=[3, 2], strides=[2, 2], auto_pad=auto)
    # float32 (ORT has no double AveragePool; linear, so wide steps are exact); strides no larger than
    # the kernel: ONNX Runtime 1.32 computes a negative pad for SAME there and refuses its own forward
    for include in (0, 1):
        ort_fd("AveragePool", {"X": f64(2, 3, 7, 6).astype(np.float32)}, ["X"], eps=0.25, tol=1e-5,
               kernel_shape=[3, 2], strides=[2, 2], auto_pad=auto, count_include_pad=include)


def test_a_chain_over_a_tensor_whose_rank_is_known_only_at_run_time():
    """A ViT-style head whose input comes out of a Reshape to a run-time shape: Gather, MatMul by a
    matrix, Add, LayerNormalization, Softmax, Transpose (no perm) and Concat on negative axes, with
    no rank known at build time; one gradient model serves tensors of rank 3 and 4."""
    T = TensorProto.DOUBLE
    nodes = [helper.make_node("Reshape", ["x", "shape"], ["r"]),
             helper.make_node("Gather", ["r", "idx"], ["g"], axis=1),
             helper.make_node("MatMul", ["g", "W"], ["m"]),
             helper.make_node("Add", ["m", "b"], ["a"]),
             helper.make_node("LayerNormalization", ["a", "s", "b2"], ["ln"], axis=-1),
             helper.make_node("Softmax", ["ln"], ["sm"], axis=-1),
             helper.make_node("Transpose", ["sm"], ["tr"]),
             helper.make_node("Concat", ["tr", "tr"], ["y"], axis=-1)]
    inputs = [helper.make_tensor_value_info("x", T, ["N", 24]), helper.make_tensor_value_info("shape", TensorProto.INT64, ["k"])]
    inputs += [helper.make_tensor_value_info(n, T, d) for n, d in (("W", [4, 5]), ("b", [5]), ("s", [5]), ("b2", [5]))]
    g = helper.make_graph(nodes, "head", inputs, [helper.make_tensor_value_info("y", T, ["d0", "d1"])],
                          [numpy_helper.from_array(np.array(0, np.int64), "idx")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)])
    m.ir_version = 8
    params = {"W": f64(4, 5), "b": f64(5), "s": f64(5), "b2": f64(5)}
    fd_check(m, {"x": f64(2, 24), "shape": np.array([2, 6, 4], np.int64), **params}, ["x", "W", "b", "s", "b2"],
             "y", rng=R)
    m.graph.output[0].CopyFrom(helper.make_tensor_value_info("y", T, ["d0", "d1", "d2"]))
    fd_check(m, {"x": f64(2, 24), "shape": np.array([2, 3, 2, 4], np.int64), **params}, ["x", "W", "b", "s", "b2"],
             "y", rng=R)
    # Concat whose output rank nothing declares (its result is summed to a scalar)
    nodes = [helper.make_node("Reshape", ["x", "shape"], ["r"]),
             helper.make_node("Concat", ["r", "r"], ["c"], axis=-2),
             helper.make_node("Mul", ["c", "c"], ["c2"]),
             helper.make_node("ReduceSum", ["c2"], ["y"], keepdims=0)]
    g = helper.make_graph(nodes, "cat", inputs[:2], [helper.make_tensor_value_info("y", T, [])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)])
    m.ir_version = 8
    fd_check(m, {"x": f64(2, 24), "shape": np.array([2, 3, 2, 4], np.int64)}, ["x"], "y", rng=R)


def test_strided_conv_transpose_with_symbolic_spatial_dims():
    """A U-Net decoder's learned upsampling over a dynamic-size input. ONNX Runtime's central
    differences in float32 (onnx.reference's forward fails on these pads, ORT has no double
    ConvTranspose): the op is bilinear, so wide central steps are exact."""
    def f32(*shape):
        return f64(*shape).astype(np.float32)
    ort_fd("ConvTranspose", {"X": f32(2, 4, 3, 4), "W": f32(4, 3, 3, 2), "B": f32(3)}, ["X", "W", "B"], eps=0.5,
           tol=1e-4, strides=[2, 2], pads=[1, 0, 0, 1], output_padding=[1, 1], kernel_shape=[3, 2])
    ort_fd("ConvTranspose", {"X": f32(2, 4, 3, 4), "W": f32(4, 1, 2, 2)}, ["X", "W"], eps=0.5, tol=1e-4, group=2,
           strides=[2, 3], kernel_shape=[2, 2])
