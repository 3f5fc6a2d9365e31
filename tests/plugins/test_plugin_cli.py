"""``onnxforge plugins list/show``, ``build mlp --activation swish`` and ``doctor``."""

from __future__ import annotations

import json

import onnx


def test_plugins_list_json_has_every_builtin_op_with_kinds_and_trainability(cli_run):
    result = cli_run("plugins", "list", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    ops = {(o["domain"], o["name"]): o for o in data["ops"]}
    assert "builtin" in data["plugins"]
    for name in ("Swish", "Gelu", "Mish", "Softplus", "Elu"):
        assert ops[("onnxforge", name)]["implementations"] == ["function"]
        assert ops[("onnxforge", name)]["trainable"] is True
    assert ops[("onnxforge", "LogGamma")]["implementations"] == ["python"]
    assert ops[("onnxforge", "LogGamma")]["trainable"] is False


def test_plugins_list_text_is_a_table(cli_run):
    result = cli_run("plugins", "list")
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert lines[0].split() == ["op", "domain", "plugin", "implementations", "trainable"]
    assert any(line.split() == ["LogGamma", "onnxforge", "builtin", "python", "no"] for line in lines)


def test_plugins_show_describes_an_op_and_its_body(cli_run):
    result = cli_run("plugins", "show", "swish")
    assert result.exit_code == 0
    assert "onnxforge.Swish (version 1, plugin builtin)" in result.output
    assert "sig = Sigmoid(X)" in result.output and "Y = Mul(X, sig)" in result.output
    data = json.loads(cli_run("plugins", "show", "onnxforge.Elu", "--json").output)
    assert data["attributes"] == {"alpha": 1.0} and data["trainable"] is True


def test_plugins_show_unknown_op_is_one_error_line(cli_run):
    result = cli_run("plugins", "show", "NoSuchOp")
    assert result.exit_code == 1
    assert len(result.output.strip().splitlines()) == 1
    assert result.output.startswith("Error: no installed plugin provides an op called 'NoSuchOp'; "
                                    "available: onnxforge.Elu")
    assert "Traceback" not in result.output


def test_build_mlp_with_plugin_activation_puts_a_plugin_node_in_the_model(cli_run, tmp_path):
    out = tmp_path / "swish.onnx"
    result = cli_run("build", "mlp", "--inputs", "64", "--hidden", "32", "--classes", "10", "--activation", "swish",
                 "-o", str(out))
    assert result.exit_code == 0, result.output
    model = onnx.load(str(out))
    assert [(n.domain, n.op_type) for n in model.graph.node if n.domain] == [("onnxforge", "Swish")]
    assert {(f.domain, f.name) for f in model.functions} == {("onnxforge", "Swish")}
    assert {o.domain: o.version for o in model.opset_import}["onnxforge"] == 1
    onnx.checker.check_model(model, full_check=True)


def test_build_mlp_with_unknown_activation_lists_plugin_ones(cli_run, tmp_path):
    result = cli_run("build", "mlp", "--inputs", "4", "--classes", "2", "--activation", "sparkle", "-o",
                 str(tmp_path / "m.onnx"))
    assert result.exit_code == 1
    assert "unknown activation 'sparkle'" in result.output and "swish" in result.output and "mish" in result.output


def test_doctor_lists_installed_plugins(cli_run):
    result = cli_run("doctor", "--json")
    assert "builtin" in json.loads(result.output)["plugins"]
