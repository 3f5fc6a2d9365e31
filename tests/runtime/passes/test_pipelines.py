"""The pass infrastructure and the named pipelines: every pass leaves the model it is given as it
was, says whether it changed anything, and the pipelines compute what the model computes."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from onnx.reference import ReferenceEvaluator

from onnxforge.graphs import lstm, mlp
from onnxforge.runtime.passes import pipelines
from onnxforge.runtime.passes.base import FunctionalPass, PassResult, Rewrite, Sequential
from onnxforge.runtime.passes.compat import RuntimeCompatible
from onnxforge.runtime.passes.fold import FoldConstants
from onnxforge.runtime.passes.gradient_form import TRAINING_MODE, GradientForms, TrainingMode
from onnxforge.runtime.passes.inference_form import InferenceForm
from onnxforge.runtime.passes.plugin_forms import InlinePlugins, PluginKernels
from onnxforge.runtime.passes.relu_mask import ReluMask


def _dropout_lstm() -> onnx.ModelProto:
    """An LSTM node with 4 inputs and a Dropout with one output: both lack the gradient forms."""
    h, i = 3, 2
    rng = np.random.default_rng(0)
    inits = [onnx.numpy_helper.from_array(rng.standard_normal(s).astype(np.float32), n)
             for n, s in (("W", (1, 4 * h, i)), ("R", (1, 4 * h, h)), ("B", (1, 8 * h)))]
    nodes = [helper.make_node("LSTM", ["x", "W", "R", "B"], ["Y"], name="lstm", hidden_size=h),
             helper.make_node("Dropout", ["Y"], ["y"], name="drop")]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 1, i])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def _folding_model() -> onnx.ModelProto:
    nodes = [helper.make_node("Constant", [], ["two"], value=onnx.numpy_helper.from_array(np.array([2.0], np.float32))),
             helper.make_node("Mul", ["two", "two"], ["four"]), helper.make_node("Add", ["x", "four"], ["y"])]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def _bare_plugin_model() -> onnx.ModelProto:
    """An MLP with the plugin op Swish whose body the file does not carry."""
    model = mlp(4, [5], 3, activation="swish")
    del model.functions[:]
    return model


CASES = {  # pass -> a model it changes
    "inline-plugins": (InlinePlugins(), lambda: mlp(4, [5], 3, activation="swish")),
    "plugin-kernels": (PluginKernels(), _bare_plugin_model),
    "gradient-forms": (GradientForms(), _dropout_lstm),
    "relu-mask": (ReluMask(), lambda: mlp(4, [5], 3)),
    "runtime-compatible": (RuntimeCompatible(max_ir=7, max_opset=17), lambda: mlp(4, [5], 3)),
    "fold-constants": (FoldConstants(), _folding_model),
    "training-mode-on": (TrainingMode(True), lambda: mlp(4, [5], 3, dropout=0.5)),
    "training-mode-off": (TrainingMode(False), lambda: TrainingMode(True)(mlp(4, [5], 3, dropout=0.5)).model),
    "inference-form": (InferenceForm(), lambda: lstm(3, hidden=4, classes=2, impl="unrolled", steps=5)),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_each_pass_returns_a_new_model_and_leaves_its_argument_as_it_was(name):
    p, make = CASES[name]
    model = make()
    before = model.SerializeToString(deterministic=True)
    result = p(model)
    assert p.label == name and not p.in_place
    assert result.modified and result.model is not model
    assert result.model.SerializeToString(deterministic=True) != before
    assert model.SerializeToString(deterministic=True) == before


@pytest.mark.parametrize("name", ["gradient-forms", "relu-mask", "runtime-compatible", "inference-form",
                                  "training-mode-on"])
def test_a_pass_with_nothing_to_do_says_so_and_returns_its_argument(name):
    p, _ = CASES[name]
    plain = _folding_model() if name != "runtime-compatible" else mlp(4, [5], 3)
    if name == "runtime-compatible":
        p = RuntimeCompatible(max_ir=10, max_opset=21)
    result = p(plain)
    assert result == PassResult(plain, False)


def test_the_gradient_forms_are_the_ones_the_training_builders_index_into():
    out = GradientForms()(_dropout_lstm()).model
    lstm_node, dropout = out.graph.node
    assert list(lstm_node.input) == ["x", "W", "R", "B", "", "", ""]
    assert list(dropout.output) == ["y", "drop.mask"]


def test_pipelines_are_named_once_and_keep_the_function():
    assert pipelines.TRAINING_SOURCE.names == ["inline-plugins", "training-mode-on"]
    assert pipelines.TRAINING.names == ["inline-plugins", "training-mode-on", "gradient-forms", "relu-mask",
                                        "runtime-compatible"]
    assert pipelines.INFERENCE.names == ["plugin-kernels", "runtime-compatible"]
    assert pipelines.EXPORT.names == ["inference-form", "training-mode-off"]
    model = mlp(4, [5], 3, activation="swish", seed=3)
    x = np.random.default_rng(1).standard_normal((6, 4)).astype(np.float32)
    reference = ReferenceEvaluator(InlinePlugins()(model).model).run(None, {"x": x})[0]
    trained_form = pipelines.for_training(model)
    assert {n.op_type for n in trained_form.graph.node}.isdisjoint({"Relu", "Swish"})
    np.testing.assert_allclose(ReferenceEvaluator(trained_form).run(None, {"x": x})[0], reference, rtol=1e-6)


def test_the_training_mode_switch_is_set_by_value_and_dropout_follows_it():
    model = mlp(4, [5], 3, dropout=0.5)
    on = TrainingMode(True)(model).model
    switch = {t.name: onnx.numpy_helper.to_array(t) for t in on.graph.initializer}[TRAINING_MODE]
    assert switch.dtype == np.bool_ and bool(switch) is True
    assert TrainingMode(False)(on).model.SerializeToString(deterministic=True) == model.SerializeToString(deterministic=True)
    x = np.ones((64, 4), np.float32)
    run = lambda m: ReferenceEvaluator(m).run(None, {"x": x})[0]  # noqa: E731
    np.testing.assert_array_equal(run(model), run(pipelines.for_export(on)))  # inference: Dropout off again
    assert not np.array_equal(run(model), run(on))  # training: Dropout drops


def test_a_functional_pass_that_edits_its_argument_is_caught():
    class Sneaky(FunctionalPass):
        name = "sneaky"

        def call(self, model):
            model.doc_string = "edited"
            return PassResult(model, True)

    with pytest.raises(RuntimeError, match="sneaky is functional but changed the model"):
        Sneaky()(mlp(2, [2], 2))


def test_sequential_chains_and_reports_any_change():
    seen = []
    first = Rewrite("first", lambda m: seen.append("first") or m)
    second = Rewrite("second", lambda m: seen.append("second") or pipelines.for_inference(m))
    result = Sequential("both", first, second)(mlp(2, [2], 2))
    assert seen == ["first", "second"] and not result.modified
    assert Sequential("relu", first, ReluMask())(mlp(2, [2], 2)).modified
    with pytest.raises(TypeError, match="takes an onnx.ModelProto"):
        ReluMask()(b"not a model")
    with pytest.raises(ValueError, match="at least one pass"):
        Sequential("empty")
