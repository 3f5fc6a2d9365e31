"""A step's depthwise convolutions on ONNX Runtime's NCHWc kernels (runtime/training/stepgraph/nchwc.py)
compute what the plain ``Conv`` computes, only the cases the kernels cover are rewritten, and a
training step run that way gives the weights the standard step gives."""

from __future__ import annotations

import platform

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

from onnxforge.runtime.ort.distribution import ort
from onnxforge.runtime.training.stepgraph import build_step
from onnxforge.runtime.training.stepgraph import runner as runner_module
from onnxforge.runtime.training.stepgraph.nchwc import NCHWC, depthwise_to_nchwc, nchwc_block, nchwc_pads, nchwc_session_model
from onnxforge.runtime.training.stepgraph.runner import StepRunner

from _stepgraph_values import start_values

F = TensorProto.FLOAT


def _avx2() -> bool:
    try:
        with open("/proc/cpuinfo") as f:
            return " avx2" in f.read()
    except OSError:
        return False


def test_the_block_size_is_found_on_x86_with_avx2():
    block = nchwc_block()
    if platform.machine() in ("x86_64", "AMD64") and _avx2():
        assert block in (8, 16)  # MLAS: 8 with AVX2, 16 with AVX-512
    else:
        assert block in (None, 4, 8, 16)


def _convs_model(c: int):
    """Convs side by side on one input: which of them are depthwise with a run-time weight decides
    which are rewritten."""
    rng = np.random.default_rng(3)
    w = {"dw1": (c, 1, 3, 3), "dw2": (c, 1, 3, 3), "dw3": (c, 1, 5, 5), "dense": (c, c, 3, 3), "mult2": (2 * c, 1, 3, 3),
         "const": (c, 1, 3, 3)}
    nodes = [
        helper.make_node("Conv", ["x", "dw1"], ["y1"], group=c, pads=[1, 1, 1, 1]),
        helper.make_node("Conv", ["x", "dw2", "bias"], ["y2"], group=c, pads=[1, 0, 1, 2], strides=[2, 1]),
        helper.make_node("Conv", ["x", "dw3"], ["y3"], group=c, pads=[4, 4, 4, 4], dilations=[2, 2], kernel_shape=[5, 5]),
        helper.make_node("Conv", ["x", "dense"], ["y4"], pads=[1, 1, 1, 1]),
        helper.make_node("Conv", ["x", "mult2"], ["y5"], group=c, pads=[1, 1, 1, 1]),
        helper.make_node("Conv", ["x", "const"], ["y6"], group=c, pads=[1, 1, 1, 1]),
    ]
    inputs = [helper.make_tensor_value_info("x", F, ["N", c, 9, 8]), helper.make_tensor_value_info("bias", F, [c])]
    inputs += [helper.make_tensor_value_info(k, F, list(s)) for k, s in w.items() if k != "const"]
    outputs = [helper.make_tensor_value_info(f"y{i}", F, None) for i in range(1, 7)]
    const = numpy_helper.from_array(rng.standard_normal(w["const"]).astype(np.float32), "const")
    model = helper.make_model(helper.make_graph(nodes, "convs", inputs, outputs, [const]),
                              opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    feeds = {"x": rng.standard_normal((3, c, 9, 8)).astype(np.float32),
             "bias": rng.standard_normal(c).astype(np.float32)}
    feeds.update({k: rng.standard_normal(s).astype(np.float32) for k, s in w.items() if k != "const"})
    return model, feeds


def _run(model, feeds):
    options = ort().SessionOptions()
    options.intra_op_num_threads = 1
    return ort().InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"]).run(None, feeds)


@pytest.mark.parametrize("extra", [0, 4], ids=["block-multiple", "padded-to-the-block"])
def test_only_depthwise_convs_with_a_run_time_weight_are_rewritten_and_they_compute_the_same(extra):
    block = nchwc_block()
    assert block is not None, "this test needs ONNX Runtime's NCHWc kernels (x86 with AVX2 or later)"
    assert nchwc_pads(block), "ReorderInput pads channels that are a multiple of 4 to the block"
    model, feeds = _convs_model(2 * block + extra)
    rewritten, count = depthwise_to_nchwc(model, block, pad=True)
    assert count == 3  # dw1, dw2 (strided, asymmetric pads, bias), dw3 (dilated 5x5); not dense/mult2/const
    convs = [n for n in rewritten.graph.node if n.op_type == "Conv"]
    assert sum(n.domain == NCHWC for n in convs) == 3 and sum(n.domain == "" for n in convs) == 3
    want = ReferenceEvaluator(model).run(None, feeds)
    for name, plain, got in zip([o.name for o in model.graph.output], want, _run(rewritten, feeds)):
        np.testing.assert_allclose(got, plain, rtol=1e-4, atol=1e-4, err_msg=name)
    # channels not a multiple of 4: left as they are; not of the block: only when padding is allowed
    assert depthwise_to_nchwc(_convs_model(block + 1)[0], block, pad=True)[1] == 0
    if extra:
        assert depthwise_to_nchwc(model, block, pad=False)[1] == 0


def test_a_cuda_session_or_a_model_without_conv_is_left_alone():
    model, _ = _convs_model(16)
    assert nchwc_session_model(model, "cuda") is model
    plain = helper.make_model(helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                                                [helper.make_tensor_value_info("x", F, [2])],
                                                [helper.make_tensor_value_info("y", F, [2])]))
    assert nchwc_session_model(plain, "cpu") is plain


def _mobile_block(c: int) -> onnx.ModelProto:
    """x [N, 3, 8, 8] -> dense 3x3 to c -> Relu -> depthwise 3x3 -> Relu -> depthwise 3x3 stride 2
    -> Relu -> global average pool -> Gemm to 4 classes: a MobileNet's pattern, small."""
    rng = np.random.default_rng(0)

    def init(name, *shape):
        return numpy_helper.from_array((rng.standard_normal(shape) * 0.3).astype(np.float32), name)

    inits = [init("stem.w", c, 3, 3, 3), init("dw1.w", c, 1, 3, 3), init("dw1.b", c), init("dw2.w", c, 1, 3, 3),
             init("fc.w", 4, c), init("fc.b", 4), numpy_helper.from_array(np.array([0, -1], np.int64), "flat")]
    nodes = [helper.make_node("Conv", ["x", "stem.w"], ["s"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["s"], ["s1"]),
             helper.make_node("Conv", ["s1", "dw1.w", "dw1.b"], ["d1"], group=c, pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["d1"], ["d1r"]),
             helper.make_node("Conv", ["d1r", "dw2.w"], ["d2"], group=c, pads=[1, 1, 1, 1], strides=[2, 2]),
             helper.make_node("Relu", ["d2"], ["d2r"]),
             helper.make_node("GlobalAveragePool", ["d2r"], ["g"]),
             helper.make_node("Reshape", ["g", "flat"], ["f"]),
             helper.make_node("Gemm", ["f", "fc.w", "fc.b"], ["logits"], transB=1)]
    graph = helper.make_graph(nodes, "mobile", [helper.make_tensor_value_info("x", F, ["N", 3, 8, 8])],
                              [helper.make_tensor_value_info("logits", F, ["N", 4])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_a_step_on_the_nchwc_kernels_trains_as_the_standard_step(monkeypatch, optimizer):
    block = nchwc_block()
    assert block is not None, "this test needs ONNX Runtime's NCHWc kernels (x86 with AVX2 or later)"
    model = _mobile_block(block + 4)  # padded to the block (24 channels, say, with a block of 16)
    trainable = [t.name for t in model.graph.initializer if t.name != "flat"]
    graph = build_step(model, output="logits", loss="cross-entropy", optimizer=optimizer, trainable=trainable,
                       feed_shapes={"x": (6, 3, 8, 8)}, weight_decay=0.01)
    # the forward's two depthwise Convs and the stride-1 one's input gradient (a depthwise Conv of
    # the output gradient by the flipped kernel) run on the NCHWc kernels
    assert depthwise_to_nchwc(graph.model, block, pad=True)[1] >= 2
    start = start_values(model, graph)
    fast = StepRunner(graph, start)
    monkeypatch.setattr(runner_module, "nchwc_session_model", lambda model, device: model)
    plain = StepRunner(graph, start)
    rng = np.random.default_rng(1)
    for _ in range(5):
        x, y = rng.standard_normal((6, 3, 8, 8)).astype(np.float32), rng.integers(0, 4, 6)
        assert fast.step([x], y, 0.05) == pytest.approx(plain.step([x], y, 0.05), rel=1e-5)
    a, b = fast.state(), plain.state()
    for name in b:
        np.testing.assert_allclose(a[name], b[name], rtol=1e-4, atol=1e-5, err_msg=name)
    assert not np.array_equal(a["dw1.w"], start["dw1.w"])  # it did train
