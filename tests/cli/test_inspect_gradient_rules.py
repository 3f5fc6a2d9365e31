"""``onnxforge inspect`` names the ops onnxforge's own differentiation (runtime.autodiff) has no
gradient rule for, with the node, in its text and under ``gradient_rules_missing`` in --json; and
whether each training backend (artifacts, onnx) trains the model, under ``backends``."""

from __future__ import annotations

import json

import numpy as np
from onnx import TensorProto, helper, numpy_helper

from onnxforge.graphs import lstm, mlp


def _save(tmp_path, model, name="m.onnx"):
    path = tmp_path / name
    path.write_bytes(model.SerializeToString())
    return path


def _model(nodes, opset=17):
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2])],
                              [numpy_helper.from_array(np.eye(2, dtype=np.float32), "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model


def test_ops_without_a_rule_are_named_with_their_node(cli_run, tmp_path):
    path = _save(tmp_path, _model([helper.make_node("MatMul", ["x", "w"], ["h"], name="mm"),
                                   helper.make_node("Trilu", ["h"], ["e"], name="the_trilu"),
                                   helper.make_node("Trilu", ["e"], ["y"], name="the_upper", upper=1)]))
    res = cli_run("inspect", path, "--json")
    assert res.exit_code == 0, res.output
    info = json.loads(res.output)
    assert info["gradient_rules_missing"] == ["Trilu (the_trilu)", "Trilu (the_upper)"]
    assert info["gradient_rules_unknown_because"] is None
    assert "trainable" in info and "ops" in info  # the existing keys stay
    res = cli_run("inspect", path)
    assert "gradient rules (onnx backend): Trilu (the_trilu), Trilu (the_upper) lack one" in res.output
    assert "trainable here: no" in res.output


def test_builders_and_plugin_activations_have_every_rule(cli_run, tmp_path):
    for i, model in enumerate([mlp(4, [3], 2, activation="gelu"), lstm(3, hidden=4, classes=2)]):
        path = _save(tmp_path, model, f"m{i}.onnx")
        assert json.loads(cli_run("inspect", path, "--json").output)["gradient_rules_missing"] == []
        assert "gradient rules (onnx backend): every op has one" in cli_run("inspect", path).output


def test_a_form_the_rule_does_not_cover_and_ops_off_the_path(cli_run, tmp_path):
    """An LSTM with sequence_lens is named; an op without a rule that no parameter reaches is not."""
    model = lstm(3, hidden=4, classes=2)
    node = next(n for n in model.graph.node if n.op_type == "LSTM")
    model.graph.initializer.append(numpy_helper.from_array(np.array([5], np.int32), "lens"))
    while len(node.input) < 5:
        node.input.append("")
    node.input[4] = "lens"
    info = json.loads(cli_run("inspect", _save(tmp_path, model), "--json").output)
    assert info["gradient_rules_missing"] == [f"LSTM ({node.name})"]
    side = _model([helper.make_node("Trilu", ["x"], ["e"], name="on_input"),
                   helper.make_node("MatMul", ["e", "w"], ["y"], name="mm")])
    assert json.loads(cli_run("inspect", _save(tmp_path, side, "s.onnx"), "--json").output)[
        "gradient_rules_missing"] == []


def test_trainability_per_backend(cli_run, tmp_path):
    """Softplus: ONNX Runtime's gradients lack it, autodiff has it; auto picks artifacts for a
    model without an LSTM node, so "trainable" (what `train` does by default) is no, with a hint."""
    from onnxforge.runtime.training.backends import BACKENDS

    path = _save(tmp_path, _model([helper.make_node("MatMul", ["x", "w"], ["h"], name="mm"),
                                   helper.make_node("Softplus", ["h"], ["y"], name="sp")]))
    info = json.loads(cli_run("inspect", path, "--json").output)
    b = info["backends"]
    assert set(b) == set(BACKENDS)
    assert b["artifacts"]["trainable"] is False and b["artifacts"]["not_trainable_because"] == "Softplus (sp)"
    assert b["onnx"] == {"available": True, "unavailable_because": None, "trainable": True,
                         "not_trainable_because": None}
    auto = info["backend_auto"]
    assert info["trainable"] is b[auto]["trainable"] and info["not_trainable_because"] == b[auto]["not_trainable_because"]
    out = cli_run("inspect", path).output
    assert "  artifacts backend: no (Softplus (sp))" in out and "  onnx backend: yes" in out
    if auto == "artifacts":
        assert "trainable here: no (Softplus (sp)); --backend onnx trains it" in out

    elu = _save(tmp_path, _model([helper.make_node("MatMul", ["x", "w"], ["h"], name="mm"),
                                  helper.make_node("Trilu", ["h"], ["y"], name="the_trilu")]), "trilu.onnx")
    onnx_backend = json.loads(cli_run("inspect", elu, "--json").output)["backends"]["onnx"]
    assert onnx_backend["not_trainable_because"] == "Trilu (the_trilu): no gradient rule for this op"

    bare = _model([helper.make_node("Relu", ["x"], ["y"], name="r")])
    del bare.graph.initializer[:]
    frozen = _save(tmp_path, bare, "none.onnx")
    info = json.loads(cli_run("inspect", frozen, "--json").output)
    assert info["trainable"] is False and all(
        v["not_trainable_because"] == "the model has no float parameters" for v in info["backends"].values())
