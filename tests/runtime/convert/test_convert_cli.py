"""``onnxforge convert`` and ``onnxforge weights`` through click's CliRunner, and fine-tuning a
converted PyTorch network with ``onnxforge train --freeze``: frozen weights stay bit for bit."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from onnxforge.graphs import mlp
from onnxforge.runtime.modelio.files import save_model
from onnxforge.samples import path as sample_path


def initialisers(path) -> dict:
    return {t.name: numpy_helper.to_array(t) for t in onnx.load(str(path)).graph.initializer}


class SmallConvNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.features = torch.nn.Sequential(torch.nn.Conv2d(1, 6, 3, padding=1), torch.nn.BatchNorm2d(6),
                                            torch.nn.ReLU(), torch.nn.MaxPool2d(2))
        self.head = torch.nn.Linear(6 * 4 * 4, 10)

    def forward(self, x):
        return self.head(torch.flatten(self.features(x), 1))


@pytest.mark.slow
def test_pytorch_network_fine_tuned_with_freeze_keeps_frozen_weights_bit_for_bit(cli_run, tmp_path):
    torch.manual_seed(0)
    net = SmallConvNet().eval()
    program = torch.export.export(net, (torch.randn(2, 1, 8, 8),), dynamic_shapes=({0: torch.export.Dim("batch")},))
    torch.export.save(program, tmp_path / "net.pt2")
    res = cli_run("convert", tmp_path / "net.pt2", "-o", tmp_path / "net.onnx", "--json", "--quiet")
    assert res.exit_code == 0, res.output
    report = json.loads(res.output)
    assert report["verified"] and report["max_abs_diff"] < 1e-4 and report["from"] == "pt2"

    res = cli_run("train", tmp_path / "net.onnx", "--data", sample_path("digits_images_train.npz"),
                 "--val", sample_path("digits_images_test.npz"), "--epochs", 2, "--lr", 3e-3,
                 "--freeze", "features.*", "--out", tmp_path / "run", "--quiet", "--json")
    assert res.exit_code == 0, res.output
    result = json.loads(res.output)
    # the head alone learns the digits from random features, normalised by the batch norm's frozen
    # (initial) running statistics: well above the 0.1 of chance
    assert result["final"]["val_accuracy"] > 0.3
    before, after = initialisers(tmp_path / "net.onnx"), initialisers(tmp_path / "run" / "model.onnx")
    frozen = [k for k in before if k.startswith("features.") and "num_batches" not in k]
    assert sorted(frozen) == ["features.0.bias", "features.0.weight", "features.1.bias", "features.1.running_mean",
                              "features.1.running_var", "features.1.weight"]  # a frozen batch norm keeps its statistics
    for name in frozen:
        assert before[name].tobytes() == after[name].tobytes(), name
    assert not np.array_equal(before["head.weight"], after["head.weight"])
    assert not np.array_equal(before["head.bias"], after["head.bias"])


def test_old_onnx_model_is_made_trainable_and_trains(cli_run, tmp_path):
    """Opset 9 with its weights in Constant nodes: no trainable parameter until converted."""
    rng = np.random.default_rng(0)
    w = rng.standard_normal((10, 64)).astype(np.float32) * 0.1
    nodes = [helper.make_node("Constant", [], ["W"], value=numpy_helper.from_array(w, "W")),
             helper.make_node("Constant", [], ["b"], value=numpy_helper.from_array(np.zeros(10, np.float32), "b")),
             helper.make_node("Gemm", ["x", "W", "b"], ["logits"], transB=1)]
    graph = helper.make_graph(nodes, "old", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 64])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 9)])
    model.ir_version = 4
    save_model(model, tmp_path / "old.onnx")
    res = cli_run("train", tmp_path / "old.onnx", "--data", sample_path("digits_train.npz"), "--epochs", 1,
                 "--out", tmp_path / "run0", "--quiet")
    assert res.exit_code == 1 and "no trainable float parameters" in res.output
    res = cli_run("convert", tmp_path / "old.onnx", "-o", tmp_path / "new.onnx", "--quiet")
    assert res.exit_code == 0, res.output
    assert "opset 9 -> 17" in res.output and "2 trainable parameters" in res.output
    res = cli_run("train", tmp_path / "new.onnx", "--data", sample_path("digits_train.npz"),
                 "--val", sample_path("digits_test.npz"), "--epochs", 3, "--lr", 1e-2, "--freeze", "b",
                 "--out", tmp_path / "run", "--quiet", "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["final"]["val_accuracy"] > 0.8
    after = initialisers(tmp_path / "run" / "model.onnx")
    assert after["b"].tobytes() == np.zeros(10, np.float32).tobytes()
    assert not np.array_equal(after["W"], w)


def test_convert_reports_and_verifies(cli_run, tmp_path):
    save_model(mlp(8, [6], 3), tmp_path / "m.onnx")
    res = cli_run("convert", tmp_path / "m.onnx", "-o", tmp_path / "m.pt2", "--quiet")
    assert res.exit_code == 0, res.output
    assert res.output.splitlines()[0].startswith(f"wrote {tmp_path / 'm.pt2'} (onnx -> pt2,")
    assert "verified: largest difference" in res.output and "onnxruntime vs torch.export" in res.output
    res = cli_run("convert", tmp_path / "m.pt2", "-o", tmp_path / "back.onnx", "--no-verify", "--json")
    report = json.loads(res.output)
    assert res.exit_code == 0 and report["verified"] is None and "max_abs_diff" not in report


def test_unsupported_op_is_named_before_any_work(cli_run, tmp_path):
    nodes = [helper.make_node("Relu", ["x"], ["r"]),
             helper.make_node("Resize", ["r", "", "scales"], ["up"], name="upsample1", mode="nearest"),
             helper.make_node("Einsum", ["up", "up"], ["y"], name="mix", equation="ncij,ncij->nc")]
    scales = numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales")
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2, 4, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2])], [scales])
    save_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "g.onnx")
    res = cli_run(*["convert", str(tmp_path / "g.onnx"), "-o", str(tmp_path / "g.pt2")])
    assert res.exit_code == 1
    line = res.output.strip().splitlines()[-1]
    assert line.startswith("Error: the model uses ops onnxforge cannot convert to PyTorch: Resize (node 'upsample1'); "
                           "Einsum (node 'mix')")
    assert "Traceback" not in res.output and not (tmp_path / "g.pt2").exists()


@pytest.mark.parametrize("args, message", [
    (["m.onnx", "-o", "m.tflite"], "'m.tflite' must end in one of .onnx, .pt2"),
    (["missing.onnx", "-o", "m.pt2"], "'missing.onnx' does not exist"),
])
def test_bad_paths_are_usage_errors(cli_run, tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    save_model(mlp(2, [2], 2), "m.onnx")
    res = cli_run(*["convert", *args])
    assert res.exit_code == 2 and message in res.output


@pytest.mark.parametrize("args, message", [
    (["m.onnx", "-o", "m.pt"], "Error: no conversion from onnx (.onnx) to torchscript (.pt)"),
    (["m.onnx", "-o", "m.pt2", "--opset", "15"], "Error: --opset applies to ONNX results; a .pt2 has no opset"),
    (["m.onnx", "-o", "n.onnx", "--input-shape", "1,2"], "Error: --input-shape is only for TorchScript sources"),
    (["m.onnx", "-o", "m.onnx"], "Error: the destination must differ from the source"),
])
def test_impossible_requests_fail_with_one_line(cli_run, tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    save_model(mlp(2, [2], 2), "m.onnx")
    res = cli_run(*["convert", *args])
    assert res.exit_code == 1 and res.output.strip().splitlines()[-1].startswith(message), res.output


def test_torchscript_needs_and_checks_input_shapes(cli_run, tmp_path):
    torch.jit.script(SmallConvNet().eval()).save(str(tmp_path / "net.pt"))
    res = cli_run(*["convert", str(tmp_path / "net.pt"), "-o", str(tmp_path / "n.onnx"), "--trust-source"])
    assert res.exit_code == 1 and "give --input-shape for each input" in res.output
    res = cli_run(*["convert", str(tmp_path / "net.pt"), "-o", str(tmp_path / "n.onnx"), "--trust-source",
                              "--input-shape", "1,1,8,8", "--input-shape", "1,4"])
    assert res.exit_code == 1 and "forward takes 1 inputs (x); give one --input-shape for each (got 2)" in res.output
    res = cli_run(*["convert", str(tmp_path / "net.pt"), "-o", str(tmp_path / "n.onnx"), "--trust-source",
                              "--input-shape", "1,1,8,8", "--quiet"])
    assert res.exit_code == 0, res.output
    assert [i.name for i in onnx.load(str(tmp_path / "n.onnx")).graph.input] == ["x"]


def test_weights_commands(cli_run, tmp_path):
    save_model(mlp(4, [3], 2, seed=1), tmp_path / "a.onnx")
    save_model(mlp(4, [3], 2, seed=2), tmp_path / "b.onnx")
    res = cli_run("weights", "export", tmp_path / "a.onnx", "-o", tmp_path / "a.safetensors")
    assert res.exit_code == 0 and res.output.startswith(f"wrote {tmp_path / 'a.safetensors'}: 4 tensors, 23 values")
    res = cli_run("convert", tmp_path / "a.onnx", "-o", tmp_path / "a.npz", "--json", "--quiet")
    assert res.exit_code == 0 and json.loads(res.output)["max_abs_diff"] == 0.0
    res = cli_run("weights", "import", tmp_path / "b.onnx", tmp_path / "a.npz", "-o", tmp_path / "c.onnx")
    assert res.exit_code == 0 and "4 parameters replaced" in res.output
    a, c = initialisers(tmp_path / "a.onnx"), initialisers(tmp_path / "c.onnx")
    assert all(a[k].tobytes() == c[k].tobytes() for k in a)
    np.savez(tmp_path / "bad.npz", **{"fc1.weight": np.ones((4, 3), np.float32)})
    res = cli_run(*["weights", "import", str(tmp_path / "b.onnx"), str(tmp_path / "bad.npz"),
                              "-o", str(tmp_path / "d.onnx"), "--partial"])
    assert res.exit_code == 1
    assert res.output.strip() == "Error: weight 'fc1.weight': the model has shape [3, 4], the file [4, 3]"


def test_program_with_a_fixed_batch_says_so(cli_run, tmp_path):
    net = torch.nn.Sequential(torch.nn.Linear(4, 3)).eval()
    torch.export.save(torch.export.export(net, (torch.randn(2, 4),)), tmp_path / "static.pt2")
    res = cli_run("convert", tmp_path / "static.pt2", "-o", tmp_path / "s.onnx", "--quiet")
    assert res.exit_code == 0, res.output
    assert "note: input 'input' has dim 0 = 2 in the source program" in res.stderr
    dims = onnx.load(str(tmp_path / "s.onnx")).graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_value for d in dims] == [2, 4]


def test_without_pytorch_the_error_says_what_to_install(cli_run, tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "torch" else real(name, *a))
    save_model(mlp(2, [2], 2), tmp_path / "m.onnx")
    res = cli_run(*["convert", str(tmp_path / "m.onnx"), "-o", str(tmp_path / "m.pt2")])
    assert res.exit_code == 1
    assert res.output.strip() == "Error: converting from or to PyTorch needs PyTorch: pip install 'onnxforge[torch]'"


def test_dynamic_batch_flag(cli_run, tmp_path):
    light = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light" / "light_shufflenet.onnx"
    res = cli_run("convert", light, "-o", tmp_path / "s.onnx", "--dynamic-batch", "--json", "--quiet")
    assert res.exit_code == 0, res.output
    report = json.loads(res.output)
    assert report["dynamic_batch"] and report["verify_inputs"] == {"gpu_0/data_0": [3, 3, 224, 224]}
    assert report["verified_with"]["source"] == "onnxruntime, one example at a time"
    res = cli_run(*["convert", str(light), "-o", str(tmp_path / "s.pt2"), "--dynamic-batch"])
    assert res.exit_code == 1 and "--dynamic-batch applies to ONNX to ONNX conversions" in res.output
