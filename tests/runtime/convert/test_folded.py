"""Folded-export detection from the ONNX file alone (no PyTorch needed): the rewriter's fusion mark,
the exporter's batch-norm name scopes, TorchScript's computed ``onnx::Conv_N`` weights, Constant
weights; and none on an ordinary model."""

from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper, numpy_helper

from onnxforge.runtime.convert.folded import folded_line, folded_parameters


def _conv_model(weight="w", bias="b", meta=None, const_weight=False, with_bn=False):
    r = np.random.default_rng(0)
    inits = [numpy_helper.from_array(r.standard_normal((2,)).astype(np.float32), bias)]
    nodes = []
    w = numpy_helper.from_array(r.standard_normal((2, 1, 3, 3)).astype(np.float32), weight)
    if const_weight:
        nodes.append(helper.make_node("Constant", [], [weight], value=w))
    else:
        inits.append(w)
    conv = helper.make_node("Conv", ["x", weight, bias], ["c" if with_bn else "y"], name="the_conv", pads=[1, 1, 1, 1])
    for k, v in (meta or {}).items():
        p = conv.metadata_props.add()
        p.key, p.value = k, v
    nodes.append(conv)
    if with_bn:
        for n in ("s", "o", "m", "v"):
            inits.append(numpy_helper.from_array(np.ones(2, np.float32), n))
        nodes.append(helper.make_node("BatchNormalization", ["c", "s", "o", "m", "v"], ["y"], name="bn"))
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 4, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_ordinary_models_are_not_folded():
    assert folded_parameters(_conv_model()) == [] and folded_line(_conv_model()) is None
    assert folded_parameters(_conv_model(with_bn=True)) == []
    # a convolution inside a batch-norm scope next to a real BatchNormalization is not a fusion
    scoped = {"pkg.torch.onnx.name_scopes": "['', 'bn', '_native_batch_norm_legit_no_training']",
              "pkg.torch.onnx.class_hierarchy": "['torch.nn.modules.batchnorm.BatchNorm2d']"}
    assert folded_parameters(_conv_model(meta=scoped, with_bn=True)) == []


def test_the_rewriters_fusion_mark():
    found = folded_parameters(_conv_model(meta={"pkg.onnxscript.rewriter.rule_name": "FuseBatchNormIntoConv"}))
    assert [(f.node, f.op, f.kind) for f in found] == [("the_conv", "Conv", "fused")]
    line = folded_line(_conv_model(meta={"pkg.onnxscript.rewriter.rule_name": "FuseBatchNormIntoConv"}))
    assert line.startswith("folded export: batch norm folded into 1 node (Conv (the_conv))")
    assert "\n" not in line and "--for-training" in line and "training mode" in line


def test_batchnorm_scope_without_batchnorm_op():
    scoped = {"pkg.torch.onnx.name_scopes": "['', 'bn', '_native_batch_norm_legit_no_training']",
              "pkg.torch.onnx.class_hierarchy": "['torch.nn.modules.batchnorm.BatchNorm2d']"}
    assert [f.kind for f in folded_parameters(_conv_model(meta=scoped))] == ["fused"]


def test_torchscript_computed_weight_and_constant_weight():
    found = folded_parameters(_conv_model(weight="onnx::Conv_73", bias="onnx::Conv_74"))
    assert [f.kind for f in found] == ["computed"] and "onnx::Conv_73" in found[0].detail
    found = folded_parameters(_conv_model(const_weight=True))
    assert [f.kind for f in found] == ["constant"]
    assert folded_line(_conv_model(const_weight=True)).startswith("folded export: weights held as constants in 1 node")
