"""A model that fails inside ONNX Runtime while training (a Reshape to a fixed [3, 8] fed a batch of
another size): each backend raises one onnxforge TrainingError line naming the step and the node,
without ORT's C++ location, its log line on stderr or a traceback; the CLI exits 1 with that line."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnxforge.runtime import Trainer
from onnxforge.runtime.errors import TrainingError
from onnxforge.runtime.ort.failures import failure_line, run_errors

NODE = "Reshape node 'fixed_reshape': The input tensor cannot be reshaped to the requested shape."


@pytest.fixture
def fixed_reshape(tmp_path):
    """x [N, 8] -> Reshape to [3, 8] -> MatMul W: runs for a batch of 3 only."""
    w = numpy_helper.from_array(np.random.default_rng(0).standard_normal((8, 4)).astype(np.float32), "W")
    shape = numpy_helper.from_array(np.array([3, 8], np.int64), "fixed_shape")
    nodes = [helper.make_node("Reshape", ["x", "fixed_shape"], ["r"], name="fixed_reshape"),
             helper.make_node("MatMul", ["r", "W"], ["logits"], name="mm")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 4])], [w, shape])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    path = tmp_path / "fixed.onnx"
    onnx.save(model, path)
    x = np.random.default_rng(1).standard_normal((7, 8)).astype(np.float32)
    return path, x, np.arange(7, dtype=np.int64) % 4


def _one_line(err: TrainingError, start: str):
    text = str(err)
    assert text.startswith(start) and NODE in text and "\n" not in text, text
    assert "onnxruntime_src" not in text and "ONNXRuntimeError" not in text and "was false" not in text
    assert err.__cause__ is None and err.__suppress_context__  # raised `from None`: no ORT traceback chained


def test_a_node_failing_at_run_time_is_one_training_error_line(training_backend, fixed_reshape, tmp_path, capfd):
    path, x, y = fixed_reshape
    trainer = Trainer(path, tmp_path / "run", backend=training_backend, optimizer="sgd", lr=0.1, progress=False)
    with pytest.raises(TrainingError) as info:  # batches of 3, 3, then 1: the third step fails
        trainer.fit((x, y), epochs=1, batch_size=3, shuffle=False)
    _one_line(info.value, "training step 3 failed in ONNX Runtime: " if training_backend == "onnx"
              else "a training step failed in ONNX Runtime: ")
    assert "Input shape:{1,8}, requested shape:{3,8}" in str(info.value)
    assert "fixed_reshape" not in capfd.readouterr().err  # ORT's own error log is silenced

    with pytest.raises(TrainingError) as info:  # the evaluation step of the same backend
        trainer.backend.eval_step([x[:5]], y[:5])
    _one_line(info.value, "evaluation step failed in ONNX Runtime: " if training_backend == "onnx"
              else "an evaluation step failed in ONNX Runtime: ")
    assert trainer.backend.eval_step([x[:3]], y[:3]) > 0  # and a fitting batch still runs


def test_the_cli_prints_the_line_and_exits_1(cli_run, fixed_reshape, tmp_path):
    path, x, y = fixed_reshape
    np.savez(tmp_path / "data.npz", x=x, y=y)
    res = cli_run("train", path, "--data", tmp_path / "data.npz", "--epochs", 1, "--batch-size", 3,
                  "--backend", "onnx", "--optimizer", "sgd", "--device", "cpu", "--out", tmp_path / "run", "--quiet")
    assert res.exit_code == 1 and res.output.count("\n") == 1, res.output
    assert "training step 3 failed in ONNX Runtime: " + NODE in res.output


@pytest.mark.parametrize("text,line", [
    ("Error in execution: Non-zero status code returned while running ScatterND node. Name:'grad/node_scatternd_11' "
     "Status Message: updates tensor should have shape equal to indices.shape[:-1] + data.shape[indices.shape[-1]:]."
     " updates shape: {32,12}, indices shape: {1,1}\nsecond line",
     "ScatterND node 'grad/node_scatternd_11': updates tensor should have shape equal to indices.shape[:-1] + "
     "data.shape[indices.shape[-1]:]. updates shape: {32,12}, indices shape: {1,1}"),
    ("/src/orttraining/training_api/module.cc:632 onnxruntime::common::Status onnxruntime::training::api::Module::"
     "TrainStep(const std::vector<OrtValue>&, std::vector<OrtValue>&) [ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : "
     "Non-zero status code returned while running Gemm node. Name:'fc' Status Message: /src/gemm_helper.h:14 "
     "onnxruntime::GemmHelper::GemmHelper(const TensorShape&, bool) left.NumDimensions() == 2 was false. "
     "First input does not have 2 dimensions: {2,3,4}", "Gemm node 'fc': First input does not have 2 dimensions: {2,3,4}"),
    ("[ONNXRuntimeError] : 2 : INVALID_ARGUMENT : Got invalid dimensions for input: x for the following indices\n"
     " index: 1 Got: 3 Expected: 8", "Got invalid dimensions for input: x for the following indices"),
    ("", "RuntimeError"),
])
def test_failure_line_reads_ort_messages(text, line):
    assert failure_line(RuntimeError(text)) == line


def test_run_errors_are_what_ort_raises():
    from onnxruntime.capi import onnxruntime_pybind11_state as state

    errors = run_errors()
    assert RuntimeError in errors and state.Fail in errors and state.InvalidArgument in errors
