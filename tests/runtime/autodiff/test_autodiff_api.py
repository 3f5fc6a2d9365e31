"""The public API: names, refusals, integer paths, tidiness, opsets, shapes; rules without a
PyTorch twin against central differences in float64."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from _autodiff_check import assert_close, fd_check, gradients, run_both, single_op_model, vi
from _autodiff_check import graph_model as _model
from onnxforge.graphs import mlp
from onnxforge.runtime import autodiff
from onnxforge.runtime.autodiff import (AutodiffError, UnsupportedOpError, build_gradients, gradient_model,
                                        missing_rules, supported_ops)
from onnxforge.runtime.errors import NotTrainableError

R = np.random.default_rng(8)


def test_public_names():
    for name in ("gradient_model", "build_gradients", "missing_rules", "supported_ops", "UnsupportedOpError",
                 "batchnorm_training_form"):
        assert hasattr(autodiff, name)
    ops = supported_ops()
    for op in ("Gemm", "MatMul", "Conv", "LSTM", "MaxPool", "BatchNormalization", "LayerNormalization", "Gather"):
        assert op in ops
    assert issubclass(UnsupportedOpError, NotTrainableError)


def test_mlp_node_count_and_outputs(tmp_path):
    """The 64-128-10 MLP: forward 3 nodes, gradient 10, as hand-written (the Relu gradient as
    Greater, Cast, Mul); outputs keep the original ones, then NAME_grad; the batch stays dynamic."""
    m = mlp(64, [128], 10)
    path = tmp_path / "mlp.onnx"
    onnx.save(m, path)
    wrt = ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]
    g = gradient_model(str(path), wrt, "logits")
    onnx.checker.check_model(g, full_check=True)
    assert [o.name for o in g.graph.output] == ["logits"] + [f"{w}_grad" for w in wrt]
    assert len(g.graph.node) == 13
    assert sum(1 for n in g.graph.node if n.name.startswith("grad/")) == 10
    assert [i.name for i in g.graph.input] == [i.name for i in m.graph.input]
    assert g.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "N"
    assert g.ir_version <= 10
    x = R.standard_normal((7, 64)).astype(np.float32)
    out = run_both(g, {"x": x})
    assert out["fc2.bias_grad"].tolist() == [7.0] * 10


def test_params_as_graph_inputs_and_build_gradients_names():
    m = mlp(3, [4], 2)
    ws = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}
    del m.graph.initializer[:]
    for k, v in ws.items():
        m.graph.input.append(vi(k, list(v.shape)))
    model, names = build_gradients(m, ["fc1.weight", "fc2.bias"], "logits",
                                   grad_names={"fc1.weight": "g/fc1.weight"})
    assert names == {"fc1.weight": "g/fc1.weight", "fc2.bias": "fc2.bias_grad"}
    assert [o.name for o in model.graph.output] == ["logits"]
    produced = {o for n in model.graph.node for o in n.output}
    assert set(names.values()) <= produced


def test_unsupported_op_refused_up_front_naming_node_and_output():
    m = _model([helper.make_node("Gemm", ["x", "w"], ["h"], name="fc"),
                helper.make_node("Trilu", ["h"], ["e"], name="the_trilu"),
                helper.make_node("ReduceSum", ["e"], ["loss"], name="sum", keepdims=0)],
               [vi("x", [2, 3])], [vi("loss", [])], [numpy_helper.from_array(np.ones((3, 3), np.float32), "w")])
    with pytest.raises(UnsupportedOpError) as info:
        gradient_model(m, ["w"], "loss")
    msg = str(info.value)
    assert "'Trilu'" in msg and "'the_trilu'" in msg and "'e'" in msg
    assert info.value.missing == [("Trilu", "the_trilu", "e")]
    assert missing_rules(m) == [("Trilu", "the_trilu")]
    assert missing_rules(m, ["w"], "loss") == [("Trilu", "the_trilu")]


def test_op_without_rule_off_the_path_is_fine():
    m = _model([helper.make_node("Gemm", ["x", "w"], ["h"], name="fc"),
                helper.make_node("Trilu", ["x"], ["side"], name="trilu_of_input"),
                helper.make_node("Tanh", ["h"], ["y"])],
               [vi("x", [2, 3])], [vi("y", [2, 3]), vi("side", [2, 3])],
               [numpy_helper.from_array(np.ones((3, 3), np.float32), "w")])
    g = gradient_model(m, ["w"], "y")
    onnx.checker.check_model(g, full_check=True)
    assert missing_rules(m, ["w"], "y") == []


def test_integer_paths_carry_no_gradient():
    """Shape arithmetic on a parameter's path (Shape, Cast to int, Range) is not differentiated."""
    m = _model([helper.make_node("Mul", ["x", "w"], ["h"]),
                helper.make_node("Shape", ["h"], ["s"]),
                helper.make_node("Cast", ["h"], ["hi"], to=TensorProto.INT64),
                helper.make_node("Cast", ["hi"], ["hf"], to=TensorProto.FLOAT),
                helper.make_node("Reshape", ["h", "s"], ["h2"]),
                helper.make_node("Add", ["h2", "hf"], ["y"])],
               [vi("x", ["N", 3])], [vi("y", ["N", 3])], [numpy_helper.from_array(np.full(3, 2.0, np.float32), "w")])
    x = R.standard_normal((4, 3)).astype(np.float32)
    got, _, _ = gradients(m, ["w"], "y", {"x": x})
    assert_close(got["w"], x.sum(0))


def test_unused_branches_get_no_gradient_nodes():
    m = _model([helper.make_node("Mul", ["x", "w"], ["a"]),
                helper.make_node("Exp", ["a"], ["side"]),
                helper.make_node("Sigmoid", ["a"], ["y"])],
               [vi("x", [2, 3])], [vi("y", [2, 3]), vi("side", [2, 3])],
               [numpy_helper.from_array(np.ones(3, np.float32), "w")])
    g = gradient_model(m, ["w"], "y")
    grad_ops = [n.op_type for n in g.graph.node if n.name.startswith("grad/")]
    assert "Exp" not in grad_ops  # the gradient of side's Exp would be a Mul by side: none built
    assert not any("side" in i for n in g.graph.node if n.name.startswith("grad/") for i in n.input)


def test_constant_subexpressions_are_folded():
    """Static shapes fold Shape/ConstantOfShape/Concat: the seed and split sizes become constants."""
    m = _model([helper.make_node("Concat", ["x", "w"], ["c"], axis=1),
                helper.make_node("Tanh", ["c"], ["y"])],
               [vi("x", [2, 3])], [vi("y", [2, 5])], [numpy_helper.from_array(np.ones((2, 2), np.float32), "w")])
    g = gradient_model(m, ["w"], "y")
    grad_ops = [n.op_type for n in g.graph.node if n.name.startswith("grad/")]
    assert "Shape" not in grad_ops and "ConstantOfShape" not in grad_ops and "Concat" not in grad_ops
    got, _, _ = gradients(m, ["w"], "y", {"x": R.standard_normal((2, 3)).astype(np.float32)})


def test_unknown_names_and_integer_targets():
    m = mlp(3, [4], 2)
    with pytest.raises(AutodiffError, match="nope"):
        gradient_model(m, ["nope"], "logits")
    with pytest.raises(AutodiffError, match="not a value"):
        gradient_model(m, ["fc1.weight"], "missing")
    with pytest.raises(AutodiffError, match="already uses"):
        gradient_model(m, ["fc1.weight"], "logits", seed=None) if False else build_gradients(
            m, ["fc1.weight"], "logits", grad_names={"fc1.weight": "x"})


def test_old_opset_is_raised_to_17():
    m = _model([helper.make_node("Unsqueeze", ["x"], ["u"], axes=[0]),
                helper.make_node("ReduceSum", ["u"], ["y"], axes=[2], keepdims=0)],
               [vi("x", [2, 3])], [vi("y", [1, 2])], opset=11)
    g = gradient_model(m, ["x"], "y")
    assert {o.domain: o.version for o in g.opset_import}[""] >= 17
    got, _, _ = gradients(m, ["x"], "y", {"x": R.standard_normal((2, 3)).astype(np.float32)})
    assert_close(got["x"], np.ones((2, 3)))


def test_model_local_functions_are_inlined():
    m = mlp(3, [4], 2, activation="swish")
    assert m.functions
    g = gradient_model(m, ["fc1.weight"], "logits")
    assert all(n.domain in ("", "ai.onnx") for n in g.graph.node) and not g.functions


def test_seed_input_is_added_with_the_output_type():
    m = mlp(3, [4], 2)
    g = gradient_model(m, ["fc2.bias"], "logits", seed="dlogits")
    assert g.graph.input[-1].name == "dlogits"
    assert g.graph.input[-1].type.tensor_type.shape.dim[0].dim_param == "N"
    dy = R.standard_normal((5, 2)).astype(np.float32)
    out = run_both(g, {"x": R.standard_normal((5, 3)).astype(np.float32), "dlogits": dy})
    assert_close(out["fc2.bias_grad"], dy.sum(0))


def test_dropout_uses_its_mask():
    m = mlp(6, [50], 3, dropout=0.3)
    for t in m.graph.initializer:
        if t.name == "training_mode":
            t.CopyFrom(numpy_helper.from_array(np.array(True), "training_mode"))
    g = gradient_model(m, ["fc1.bias"], "logits")
    onnx.checker.check_model(g, full_check=True)
    mask_name = next(n.output[1] for n in g.graph.node if n.op_type == "Dropout")
    g.graph.output.append(vi(mask_name, None, TensorProto.BOOL))
    x = R.standard_normal((4, 6)).astype(np.float32)
    import onnxruntime as ort

    out = dict(zip([o.name for o in g.graph.output],
                   ort.InferenceSession(g.SerializeToString()).run(None, {"x": x})))
    ws = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}
    z = x @ ws["fc1.weight"].T + ws["fc1.bias"]
    dh = np.ones((4, 3), np.float32) @ ws["fc2.weight"] * out[mask_name] / 0.7
    assert_close(out["fc1.bias_grad"], (dh * (z > 0)).sum(0))


def _fd_check(op, inputs, wrt, attrs=None, opset=17, n_out=1, consts=()):
    model = single_op_model(op, {k: v.astype(np.float64) if v.dtype.kind == "f" else v for k, v in inputs.items()},
                            n_out, opset=opset, const_inputs=dict.fromkeys(consts), **(attrs or {}))
    for init in model.graph.initializer:
        init.CopyFrom(numpy_helper.from_array(np.asarray(inputs[init.name]), init.name))
    feeds = {k: v.astype(np.float64) for k, v in inputs.items() if k not in consts}
    fd_check(model, feeds, wrt, "y0", rng=R, what=op)


def test_batchnorm_inference_running_stats_by_central_differences():
    inputs = {"X": R.standard_normal((3, 2, 2)), "s": R.standard_normal(2), "b": R.standard_normal(2),
              "m": R.standard_normal(2), "v": R.uniform(0.5, 2, 2)}
    _fd_check("BatchNormalization", inputs, ["X", "s", "b", "m", "v"])


def test_reduce_mean_runtime_axes_by_central_differences():
    inputs = {"X": R.standard_normal((2, 3, 2)), "A": np.array([1], np.int64)}
    model_inputs = dict(inputs)
    _fd_check("ReduceMean", model_inputs, ["X"], {"keepdims": 0}, opset=18, consts=("A",))


def test_clip_with_tensor_bounds_by_central_differences():
    inputs = {"X": R.standard_normal((3, 4)), "lo": np.array(-0.3), "hi": np.array(0.4)}
    _fd_check("Clip", inputs, ["X", "lo", "hi"])


def test_resize_crop_with_scales_known_only_at_run_time_is_refused():
    """(Run-time scales and sizes are covered otherwise: test_autodiff_runtime_dims.py.)"""
    m = _model([helper.make_node("Resize", ["x", "r", "s"], ["y"], name="up", mode="linear",
                                 coordinate_transformation_mode="tf_crop_and_resize")],
               [vi("x", [1, 1, 2, 2]), vi("r", [8]), vi("s", [4])], [vi("y", None)])
    with pytest.raises(UnsupportedOpError, match=r"'Resize' \(node 'up'\).*tf_crop_and_resize.*run time"):
        gradient_model(m, ["x"], "y")


@pytest.mark.parametrize("op,gates", [("LSTM", 4), ("GRU", 3)])
def test_recurrent_node_declaring_only_y_h(op, gates):
    """The rule declares Y on the (copied) forward node for itself; central differences agree."""
    T, N, In, H = 3, 2, 3, 2
    ins = {"X": R.standard_normal((T, N, In)), "W": R.standard_normal((1, gates * H, In)),
           "R": R.standard_normal((1, gates * H, H))}
    m = single_op_model(op, ins, 2, hidden_size=H)
    m.graph.node[0].output[0] = ""
    del m.graph.output[0]
    g = gradient_model(m, ["X", "W", "R"], "y1")
    assert g.graph.node[0].output[0] and [o.name for o in g.graph.output][0] == "y1"
    fd_check(m, ins, ["X", "W", "R"], "y1", rng=R, what=f"{op} Y_h only")


def test_conv_weight_gradient_keeps_the_conv_where_patches_would_be_large():
    """Patches of more than 2^19 values per sample (here 9 * 8 * 96 * 96) are not built."""
    m = single_op_model("Conv", {"X": np.zeros((1, 8, 96, 96), np.float32), "W": np.zeros((2, 8, 3, 3), np.float32)},
                        pads=[1, 1, 1, 1], dynamic="batch")
    grad_ops = [n.op_type for n in gradient_model(m, ["W"], "y0").graph.node if n.name.startswith("grad/")]
    assert "Conv" in grad_ops and "MatMul" not in grad_ops
