"""ONNX to ONNX: old-opset files that the installed ONNX Runtime refuses as they are run after conversion
with the outputs of onnx.reference.ReferenceEvaluator (or numpy) on the original file; weights kept
as Constant nodes become trainable initialisers; --opset moves a model between opsets exactly."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

from onnxforge.runtime.convert import convert
from onnxforge.runtime.convert.onnx_upgrade import upgrade
from onnxforge.runtime.errors import ConversionError
from onnxforge.runtime.modelio.files import save_model
from onnxforge.runtime.ort.distribution import runtime_info
from onnxforge.runtime.passes.gradient_form import trainable_parameters

RNG = np.random.default_rng(7)
X = RNG.standard_normal((2, 3, 4, 4)).astype(np.float32)
# what the installed runtime loads: 10 and 21 for ONNX Runtime training 1.19, 13 and 26 for 1.31
MAX_IR, MAX_OPSET = runtime_info().max_ir_version, runtime_info().max_opset
# a newer runtime (1.32: opset 28) may load every opset this onnx knows: then none is "too new" for it
# that onnx could convert down
_NO_NEWER_OPSET = pytest.mark.skipif(MAX_OPSET >= onnx.defs.onnx_opset_version(), reason=(
    f"the installed ONNX Runtime loads opset {MAX_OPSET}, the newest onnx {onnx.__version__} knows"))


def f32(name, value):
    return numpy_helper.from_array(np.asarray(value, np.float32), name)


def make(nodes, inits, opset, ir, x_shape=(2, 3, 4, 4), out_shape=None):
    graph = helper.make_graph(nodes, "old", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x_shape))],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = ir
    if ir <= 3:  # IR 3 lists every initialiser as a graph input too
        graph.input.extend(helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)) for t in inits)
    return model


def old_models():
    stats = [f32("scale", RNG.random(3) + 0.5), f32("shift", RNG.standard_normal(3)),
             f32("mean", RNG.standard_normal(3)), f32("var", RNG.random(3) + 0.5)]
    return {
        # opset 6 BatchNormalization with is_test/spatial: ORT 1.19 has no kernel for version 6
        "batchnorm-6": make([helper.make_node("BatchNormalization", ["x", "scale", "shift", "mean", "var"], ["y"],
                                              is_test=1, spatial=1, epsilon=1e-5)], stats, 6, 3),
        # opset 1 Relu with the long-gone consumed_inputs attribute
        "relu-1": make([helper.make_node("Relu", ["x"], ["y"], consumed_inputs=[0])], [], 1, 3),
        # opset 6 Gemm with broadcast=1
        "gemm-6": make([helper.make_node("Gemm", ["x", "w", "c"], ["y"], transB=1, broadcast=1)],
                       [f32("w", RNG.standard_normal((5, 3))), f32("c", RNG.standard_normal(5))], 6, 3, x_shape=(2, 3)),
        # an IR version newer than the runtime loads
        "ir-above-runtime": make([helper.make_node("Conv", ["x", "w"], ["y"], kernel_shape=[3, 3], pads=[1, 1, 1, 1])],
                                 [f32("w", RNG.standard_normal((4, 3, 3, 3)))], 17, MAX_IR + 1),
        # an opset newer than the runtime's
        "opset-above-runtime": make([helper.make_node("Conv", ["x", "w"], ["c"], kernel_shape=[3, 3]),
                                     helper.make_node("Relu", ["c"], ["y"])],
                                    [f32("w", RNG.standard_normal((4, 3, 3, 3)))], MAX_OPSET + 1, 10),
    }


def ort_refuses(model) -> bool:
    options = ort.SessionOptions()
    options.log_severity_level = 4
    try:
        ort.InferenceSession(model.SerializeToString(), options).run(None, {"x": X[:, :, 0, 0] if len(
            model.graph.input[0].type.tensor_type.shape.dim) == 2 else X})
    except Exception:  # noqa: BLE001
        return True
    return False


def ort_run(model, x):
    return ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})[0]


@pytest.mark.parametrize("name", [pytest.param(n, marks=[_NO_NEWER_OPSET] if n == "opset-above-runtime" else [])
                                  for n in old_models()])
def test_refused_old_models_run_after_conversion_like_the_reference(name, tmp_path):
    model = old_models()[name]
    assert ort_refuses(model), f"{name} was meant to be a file ONNX Runtime refuses"
    x = X[:, :, 0, 0] if name == "gemm-6" else X
    expected = ReferenceEvaluator(model).run(None, {"x": x})[0]
    save_model(model, tmp_path / "old.onnx")
    report = convert(tmp_path / "old.onnx", tmp_path / "new.onnx")
    new = onnx.load(tmp_path / "new.onnx")
    assert not ort_refuses(new)
    np.testing.assert_allclose(ort_run(new, x), expected, rtol=1e-5, atol=1e-5)
    assert report["to_opset"] <= MAX_OPSET and new.ir_version <= MAX_IR
    assert report["max_abs_diff"] < 1e-5 and report["verified"]
    assert {t.name for t in new.graph.initializer} >= {t.name for t in model.graph.initializer}
    assert not [i for i in new.graph.input if i.name in {t.name for t in new.graph.initializer}]


def test_legacy_axis_broadcast_add_is_rewritten_to_numpy_broadcasting():
    bias = RNG.standard_normal(3).astype(np.float32)
    model = make([helper.make_node("Add", ["x", "b"], ["y"], broadcast=1, axis=1)], [f32("b", bias)], 6, 3)
    assert ort_refuses(model)
    new, report = upgrade(model)
    # opset 6 semantics: b is aligned with axis 1 of x
    np.testing.assert_allclose(ort_run(new, X), X + bias.reshape(1, 3, 1, 1), rtol=1e-6)
    assert report["from_opset"] == 6 and report["to_opset"] == 17


def test_weights_in_constant_nodes_become_trainable_initialisers():
    w = RNG.standard_normal((4, 3, 3, 3)).astype(np.float32)
    b = RNG.standard_normal(4).astype(np.float32)
    nodes = [helper.make_node("Constant", [], ["w"], value=f32("w", w)),
             helper.make_node("Constant", [], ["b_half"], value=f32("b_half", b / 2)),
             helper.make_node("Constant", [], ["two"], value=f32("two", 2.0)),
             helper.make_node("Mul", ["b_half", "two"], ["b"]),               # computed from constants
             helper.make_node("Conv", ["x", "w", "b"], ["c"], kernel_shape=[3, 3]),
             helper.make_node("Constant", [], ["shape"], value=numpy_helper.from_array(np.array([0, -1]), "shape")),
             helper.make_node("Reshape", ["c", "shape"], ["y"])]
    model = make(nodes, [], 13, 7)
    assert trainable_parameters(model) == []
    new, report = upgrade(model)
    assert sorted(trainable_parameters(new)) == ["b", "w"]   # the shape stays a constant, not a parameter
    assert report["folded"] == 5 and not any(n.op_type == "Mul" for n in new.graph.node)
    expected = ReferenceEvaluator(model).run(None, {"x": X})[0]
    np.testing.assert_allclose(ort_run(new, X), expected, rtol=1e-5, atol=1e-5)


def test_opset_down_and_up_keeps_the_outputs(tmp_path):
    from onnxforge.graphs import mlp

    save_model(mlp(6, [5], 3, dropout=0.2), tmp_path / "m.onnx")
    down = convert(tmp_path / "m.onnx", tmp_path / "m15.onnx", opset=15)
    up = convert(tmp_path / "m15.onnx", tmp_path / "m21.onnx", opset=21)
    assert onnx.load(tmp_path / "m15.onnx").opset_import[0].version == 15
    assert onnx.load(tmp_path / "m21.onnx").opset_import[0].version == 21
    assert down["max_abs_diff"] < 1e-6 and up["max_abs_diff"] < 1e-6


def test_opset_out_of_range_is_refused(tmp_path):
    with pytest.raises(ConversionError, match=f"between 7 and {MAX_OPSET} "):
        upgrade(old_models()["relu-1"], MAX_OPSET + 1)


def test_verification_catches_a_wrong_result(tmp_path, monkeypatch):
    from onnxforge.runtime.convert import onnx_upgrade

    real = onnx_upgrade.upgrade

    def broken(model, opset=None, **kw):
        out, report = real(model, opset, **kw)
        w = out.graph.initializer[0]
        w.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(w) + 0.01, w.name))
        return out, report

    monkeypatch.setattr(onnx_upgrade, "upgrade", broken)
    save_model(old_models()["batchnorm-6"], tmp_path / "old.onnx")
    with pytest.raises(ConversionError, match="verification failed"):
        convert(tmp_path / "old.onnx", tmp_path / "new.onnx")


def test_plugin_ops_with_function_bodies_become_standard_ops(tmp_path):
    from onnxforge.graphs import mlp

    model = mlp(6, [5], 3, activation="swish")
    assert any(n.domain == "onnxforge" for n in model.graph.node)
    save_model(model, tmp_path / "m.onnx")
    report = convert(tmp_path / "m.onnx", tmp_path / "m19.onnx", opset=19)
    out = onnx.load(tmp_path / "m19.onnx")
    assert {n.domain for n in out.graph.node} == {""} and not out.functions
    assert [n.op_type for n in out.graph.node] == ["Gemm", "Sigmoid", "Mul", "Gemm"]
    assert report["max_abs_diff"] < 1e-6


@pytest.mark.torch
def test_plugin_ops_with_function_bodies_convert_to_pytorch(tmp_path):
    from onnxforge.graphs import mlp

    save_model(mlp(6, [5], 3, activation="swish"), tmp_path / "m.onnx")
    assert convert(tmp_path / "m.onnx", tmp_path / "m.pt2")["max_abs_diff"] < 1e-5


def test_dropout_6_and_upsample_7_become_their_modern_forms():
    """Forms onnx.reference cannot run (Dropout-6 with is_test) or ORT 1.19 runs only as legacy
    (Upsample-7 with scales as an attribute): checked against numpy."""
    dropout = make([helper.make_node("Dropout", ["x"], ["y"], is_test=1, ratio=0.3)], [], 6, 3)
    assert ort_refuses(dropout)
    new, _ = upgrade(dropout)
    assert [n.op_type for n in new.graph.node if n.op_type != "Constant"] == ["Dropout"]
    np.testing.assert_array_equal(ort_run(new, X), X)   # inference: the identity
    upsample = make([helper.make_node("Upsample", ["x"], ["y"], scales=[1.0, 1.0, 2.0, 3.0], mode="nearest")], [], 7, 3)
    new, report = upgrade(upsample)
    assert [n.op_type for n in new.graph.node if n.op_type != "Constant"] == ["Resize"] and report["parameters"] == 0
    np.testing.assert_array_equal(ort_run(new, X), X.repeat(2, axis=2).repeat(3, axis=3))


def _small_convnet(torch):
    """Conv(1->4, 3x3) -> ReLU -> Linear(256->3) on 1x8x8, flattened by its batch size (what
    torch.onnx.export bakes in as a fixed batch), in eval mode."""

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(1, 4, 3, padding=1)
            self.fc = torch.nn.Linear(4 * 8 * 8, 3)

        def forward(self, x):
            h = torch.relu(self.conv(x))
            return self.fc(h.view(h.size(0), -1))

    return Net().eval()


@pytest.mark.torch
def test_a_batch_1_export_gets_a_dynamic_batch(tmp_path):
    """A network exported for one example (Reshape to [1, -1] baked in) trains and runs on batches
    after --dynamic-batch; checked against PyTorch on a batch of 5."""
    import io
    import warnings

    import torch

    torch.manual_seed(0)

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(1, 4, 3, padding=1)
            self.fc = torch.nn.Linear(4 * 8 * 8, 3)

        def forward(self, x):
            return self.fc(torch.relu(self.conv(x)).reshape(1, -1))

    net = Net().eval()
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (torch.randn(1, 1, 8, 8),), buffer, dynamo=False, opset_version=11,
                          input_names=["x"], output_names=["y"])
    (tmp_path / "one.onnx").write_bytes(buffer.getvalue())
    report = convert(tmp_path / "one.onnx", tmp_path / "many.onnx", dynamic_batch=True)
    assert report["reshapes_rewritten"] == 1 and report["verified"]
    assert report["verify_inputs"] == {"x": [3, 1, 8, 8]}
    x = torch.randn(5, 1, 8, 8)
    expected = torch.cat([net(x[i:i + 1]) for i in range(5)]).detach().numpy()
    np.testing.assert_allclose(ort_run(onnx.load(tmp_path / "many.onnx"), x.numpy()), expected, rtol=1e-5, atol=1e-5)
    disagree = make([helper.make_node("Relu", ["x"], ["y"])], [], 13, 7, out_shape=[3, 3, 4, 4])
    with pytest.raises(ConversionError, match=r"disagree on their first dimension \('x' 2, 'y' 3\)"):
        upgrade(disagree, dynamic_batch=True)


@pytest.mark.torch
def test_a_plain_torch_onnx_export_at_batch_4_gets_a_dynamic_batch(tmp_path):
    """torch.onnx.export without dynamic axes fixes the batch at the example's size (4 here), and
    x.view(x.size(0), -1) becomes Reshape to [4, -1]; --dynamic-batch frees both. Checked against
    PyTorch on batches of 5 and 1."""
    import io
    import warnings

    import torch

    torch.manual_seed(1)

    net = _small_convnet(torch)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (torch.randn(4, 1, 8, 8),), buffer, dynamo=False, opset_version=17,
                          input_names=["x"], output_names=["y"])
    exported = onnx.load_model_from_string(buffer.getvalue())
    assert exported.graph.input[0].type.tensor_type.shape.dim[0].dim_value == 4
    (tmp_path / "four.onnx").write_bytes(buffer.getvalue())
    report = convert(tmp_path / "four.onnx", tmp_path / "any.onnx", dynamic_batch=True)
    assert report["fixed_batch"] == 4 and report["verified"]
    assert report["verify_inputs"] == {"x": [12, 1, 8, 8]}  # three batches of 4, run as one
    for n in (5, 1):
        x = torch.randn(n, 1, 8, 8)
        np.testing.assert_allclose(ort_run(onnx.load(tmp_path / "any.onnx"), x.numpy()), net(x).detach().numpy(),
                                   rtol=1e-5, atol=1e-5)


@pytest.mark.torch
def test_the_default_torch_onnx_export_converts_with_a_dynamic_batch(tmp_path):
    """torch.onnx.export's default exporter (dynamo, through onnxscript from the torch extra) writes
    opset 18+ with Reshape(allowzero=1) to [4, -1]; --dynamic-batch frees it. Checked against
    PyTorch on a batch of 5."""
    pytest.importorskip("onnxscript")
    import warnings

    import torch

    torch.manual_seed(2)

    net = _small_convnet(torch)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (torch.randn(4, 1, 8, 8),), str(tmp_path / "plain.onnx"))
    report = convert(tmp_path / "plain.onnx", tmp_path / "free.onnx", dynamic_batch=True)
    assert report["fixed_batch"] == 4 and report["reshapes_rewritten"] == 1 and report["verified"]
    x = torch.randn(5, 1, 8, 8)
    np.testing.assert_allclose(ort_run(onnx.load(tmp_path / "free.onnx"), x.numpy()), net(x).detach().numpy(),
                               rtol=1e-5, atol=1e-5)
