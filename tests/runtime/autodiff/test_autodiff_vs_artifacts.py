"""Whole-model gradients of every builder equal the gradients ONNX Runtime's training artifacts
(onnxruntime-training 1.19.2, as the artifacts backend generates them) give on the same model,
weights and batch: the loss is ``sum(output * dY)`` for one random dY, appended to the graph, and
ORT's gradients are read from its checkpoint state after one forward-backward pass."""

from __future__ import annotations

import tempfile

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from _autodiff_cases import BUILDERS, builder_case
from _autodiff_check import assert_close, gradients

training = pytest.importorskip("onnxruntime.training", reason="onnxruntime-training (the artifacts) is not installed")

R = np.random.default_rng(21)
TOL = 1e-5


def artifacts_gradients(model, feeds, wrt, out, dy):
    """The gradients of ``sum(out * dy)`` that ORT's training artifacts compute for ``model``,
    prepared as the artifacts backend prepares it (plugin functions, gradient forms, compat)."""
    from onnxforge import plugins
    from onnxforge.runtime.ort.distribution import quiet_native_stderr, training_api
    from onnxforge.runtime.passes.compat import make_runtime_compatible
    from onnxforge.runtime.passes.gradient_form import prepare_for_gradients

    artifacts, _, api = training_api()
    m = onnx.ModelProto()
    m.CopyFrom(make_runtime_compatible(prepare_for_gradients(plugins.prepare_training(model))))
    g = m.graph
    g.node.extend([helper.make_node("Constant", [], ["t/dY"], value=numpy_helper.from_array(dy)),
                   helper.make_node("Mul", [out, "t/dY"], ["t/weighted"]),
                   helper.make_node("ReduceSum", ["t/weighted"], ["t/loss"], keepdims=0)])
    del g.output[:]
    g.output.append(helper.make_tensor_value_info("t/loss", TensorProto.FLOAT, []))
    frozen = [t.name for t in g.initializer if t.name not in wrt]
    with tempfile.TemporaryDirectory() as d:
        with quiet_native_stderr():
            artifacts.generate_artifacts(m, requires_grad=wrt, frozen_params=frozen or None, loss=None,
                                         artifact_directory=d)
        state = api.CheckpointState.load_checkpoint(f"{d}/checkpoint")
        module = api.Module(f"{d}/training_model.onnx", state, f"{d}/eval_model.onnx")
        module.train()
        module(*[feeds[n] for n in module.input_names()])
        return {w: np.array(state.parameters[w].grad) for w in wrt}


@pytest.mark.parametrize("name", BUILDERS)
def test_builder_gradients_equal_the_training_artifacts(name):
    m, feeds, wrt, out, forward = builder_case(name, R)
    y = gradients(m, wrt, out, feeds, both=False)[1][out]
    dy = R.standard_normal(y.shape).astype(np.float32)
    ours, _, _ = gradients(m, wrt, out, {**feeds, "dY": dy}, seed="dY", both=False)
    # ORT gets the builder's own model (batch norm in inference form: ORT trains it on batch statistics)
    theirs = artifacts_gradients(forward, feeds, wrt, out, dy)
    for w in wrt:
        assert_close(ours[w], theirs[w], TOL, what=f"{name} d{w} vs the training artifacts")
