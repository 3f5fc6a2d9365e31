"""``onnxforge gradcheck``: float64 central differences against the onnx backend's gradients; a
deliberately broken rule fails the check with the parameter named."""

from __future__ import annotations

import json

import numpy as np
import onnx
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

from onnxforge.cli.main import cli
from onnxforge.runtime.autodiff.ops import RULES
from onnxforge.runtime.training.gradcheck import gradcheck


def _mlp(path=None):
    """x[N,4] -> Gemm(W1,b1) -> Tanh -> Gemm(W2,b2) -> LayerNormalization(g, b) -> y[N,3]."""
    r = np.random.default_rng(0)
    inits = [numpy_helper.from_array(r.standard_normal(s).astype(np.float32) * 0.7, n)
             for n, s in (("W1", (4, 5)), ("b1", (5,)), ("W2", (5, 3)), ("b2", (3,)), ("g", (3,)), ("beta", (3,)))]
    nodes = [helper.make_node("Gemm", ["x", "W1", "b1"], ["h"], name="fc1"),
             helper.make_node("Tanh", ["h"], ["t"], name="act"),
             helper.make_node("Gemm", ["t", "W2", "b2"], ["z"], name="fc2"),
             helper.make_node("LayerNormalization", ["z", "g", "beta"], ["y"], name="norm", axis=-1)]
    graph = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    if path is not None:
        onnx.save(model, path)
    return model


def _feeds():
    return {"x": np.random.default_rng(1).standard_normal((3, 4)).astype(np.float32)}


def test_correct_rules_pass_with_small_errors():
    report = gradcheck(_mlp(), _feeds(), samples=6)
    assert report.passed, report.to_dict()
    assert [p.name for p in report.parameters] == ["W1", "b1", "W2", "b2", "g", "beta"]
    assert all(p.max_rel_error < 1e-5 for p in report.parameters)
    assert all(p.samples == min(6, int(np.prod(p.shape))) for p in report.parameters)


def _broken_tanh(ctx, node, dys, need):
    """dX = dY * (1 - Y): the square forgotten."""
    y, g = node.output[0], dys[0]
    return [ctx.like(ctx.op("Mul", [g, ctx.op("Sub", [ctx.scalar(1.0, y), y])]), g)]


def test_broken_rule_fails_naming_the_parameters(monkeypatch, tmp_path):
    path = tmp_path / "mlp.onnx"
    _mlp(path)
    monkeypatch.setattr(RULES["Tanh"], "vjp", _broken_tanh)
    result = CliRunner().invoke(cli, ["gradcheck", str(path), "--samples", "4", "--json"])
    assert result.exit_code == 1, result.output
    report = json.loads(result.output)
    assert not report["passed"]
    assert set(report["failed"]) == {"W1", "b1"}  # upstream of Tanh; W2, b2, g, beta are right
    bad = {p["name"]: p for p in report["parameters"]}
    assert bad["W1"]["max_rel_error"] > 1e-2 and bad["W2"]["max_rel_error"] < 1e-5
    text = CliRunner().invoke(cli, ["gradcheck", str(path), "--samples", "4", "--quiet"])
    assert text.exit_code == 1
    assert "FAIL" in text.output and "W1" in text.output


def test_cli_passes_with_params_glob_and_data(tmp_path):
    path = tmp_path / "mlp.onnx"
    _mlp(path)
    np.savez(tmp_path / "d.npz", x=_feeds()["x"])
    result = CliRunner().invoke(cli, ["gradcheck", str(path), "--params", "W*", "--data", str(tmp_path / "d.npz"),
                                      "--samples", "3", "--quiet"])
    assert result.exit_code == 0, result.output
    assert "W1" in result.output and "W2" in result.output and "b1" not in result.output
    assert "passed: 2 parameters" in result.output


def test_bad_glob_and_bad_data_are_clear_errors(tmp_path):
    path = tmp_path / "mlp.onnx"
    _mlp(path)
    result = CliRunner().invoke(cli, ["gradcheck", str(path), "--params", "nothing*"])
    assert result.exit_code != 0 and "matches none" in result.output
    np.savez(tmp_path / "bad.npz", x=np.zeros((2, 7), np.float32))
    result = CliRunner().invoke(cli, ["gradcheck", str(path), "--data", str(tmp_path / "bad.npz")])
    assert result.exit_code != 0 and "'x' expects shape" in result.output


def test_refused_model_is_named(tmp_path):
    """An op without a rule (a custom-domain op no plugin defines): refused naming node and op, not a traceback."""
    model = _mlp()
    model.graph.node[1].op_type, model.graph.node[1].domain = "Softsign", "com.example"
    model.opset_import.append(helper.make_opsetid("com.example", 1))
    onnx.save(model, tmp_path / "m.onnx")
    result = CliRunner().invoke(cli, ["gradcheck", str(tmp_path / "m.onnx")])
    assert result.exit_code != 0 and "Softsign" in result.output and "act" in result.output
    assert "Traceback" not in result.output
