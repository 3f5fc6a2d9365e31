"""Depthwise convolutions of a step run through ONNX Runtime's blocked-channel (NCHWc) kernels.

ONNX Runtime's CPU ``Conv`` runs a depthwise convolution (``group`` = channels, one filter per
channel) with a fast blocked-channel kernel only when its weight is a constant: its NCHWc graph
transformer reorders constant weights once, when the session is made. In a training step every
weight is an input (it changes each step), so the plain kernel runs instead: an im2col and a
one-row GEMM per channel. Measured on the 2-core machine (AVX-512, one thread, alternating, load
4-6): [32, 144, 8, 8] 3x3 depthwise, 1.55-1.63 ms with the weight an input against 0.17 ms
constant, on onnxruntime 1.19.2 and 1.32.0 alike; MobileNet-style and EfficientNet-style steps
spend most of their forward there and in the stride-1 input gradient (a depthwise ``Conv`` of the
output gradient by the flipped kernel).

:func:`nchwc_session_model` gives the session a copy of the step in which each such ``Conv``
reorders its weight at run time with standard ops (``Reshape``, ``Transpose``: channels blocked by
the kernel's block size, innermost) and runs ONNX Runtime's own ``com.microsoft.nchwc`` kernels
(``ReorderInput``, ``Conv``, ``ReorderOutput``): 0.18-0.19 ms for the case above, equal results
(within float rounding: 2e-6). Channels that are not a multiple of the block (24 with a block
of 16) are padded to it with zero filters (``ReorderInput`` pads the input's, ``ReorderOutput``
drops the extra outputs). The standard step (what checkpoints, exports and bundles carry)
is not changed: only the CPU session runs the copy. The block size (16 with AVX-512, 8 with AVX2)
is the CPU's; :func:`nchwc_block` finds it by running a probe against the plain ``Conv`` once per
process and answers ``None`` where no block size reproduces it (no NCHWc kernels in this build or
on this CPU): then nothing is rewritten.

Dense convolutions gain less (3x3, 64 and 128 channels: 1.12-1.19x) and pointwise ones lose
(0.93-0.95x), so only depthwise ones (a multiplier of one) are rewritten.
"""

from __future__ import annotations

import functools

import numpy as np
import onnx
from onnx import helper, numpy_helper

from onnxforge.runtime.modelio.protos import copy_model, is_default_domain, static_dims
from onnxforge.runtime.ort.distribution import ort

__all__ = ["NCHWC", "nchwc_block", "nchwc_pads", "nchwc_session_model", "depthwise_to_nchwc"]

NCHWC = "com.microsoft.nchwc"
_BLOCKS = (16, 8, 4)  # MLAS's NCHWc block sizes (AVX-512, AVX2/AVX, SSE/NEON builds)


def _reordered(nodes: list, inits: list, weight: str, channels: int, kernel: list[int], block: int,
               prefix: str) -> tuple[str, int]:
    """Nodes giving ``weight`` ([C, 1, kh, kw]) in the NCHWc depthwise layout: channels padded with
    zero filters to a multiple of ``block`` (P of them) and blocked by it, the block innermost
    ([P / block, 1, kh, kw, block], as [P, 1, kh, kw]); returns its name and P."""
    padded = -(-channels // block) * block
    if padded != channels:
        pads = numpy_helper.from_array(np.array([0] * 4 + [padded - channels, 0, 0, 0], np.int64), f"{prefix}.pads")
        inits.append(pads)
        nodes.append(helper.make_node("Pad", [weight, pads.name], [f"{prefix}.wp"], name=f"{prefix}.wp"))
        weight = f"{prefix}.wp"
    split = numpy_helper.from_array(np.array([padded // block, block, 1, *kernel], np.int64), f"{prefix}.split")
    whole = numpy_helper.from_array(np.array([padded, 1, *kernel], np.int64), f"{prefix}.whole")
    inits += [split, whole]
    nodes += [helper.make_node("Reshape", [weight, split.name], [f"{prefix}.w5"], name=f"{prefix}.w5"),
              helper.make_node("Transpose", [f"{prefix}.w5"], [f"{prefix}.wt"], name=f"{prefix}.wt",
                               perm=[0, 2, 3, 4, 1]),
              helper.make_node("Reshape", [f"{prefix}.wt", whole.name], [f"{prefix}.w"], name=f"{prefix}.w")]
    return f"{prefix}.w", padded


def _attrs(node) -> dict:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _shapes(model: onnx.ModelProto) -> dict:
    """Value name -> static dims (``None`` where a dim is not a number), by shape inference."""
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False)
    out = {}
    for v in (*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output):
        if v.type.tensor_type.HasField("shape"):
            out[v.name] = list(static_dims(v))
    out.update({t.name: list(t.dims) for t in model.graph.initializer})
    return out


def _eligible(node, shapes: dict, constants: set, block: int, pad: bool) -> tuple[int, list[int]] | None:
    """``(channels, kernel)`` when ``node`` is a 2-D depthwise ``Conv`` (multiplier one, explicit
    pads) whose weight is not a constant and whose channels are a multiple of ``block`` (with
    ``pad``: of 4, ``ReorderInput`` padding them to the block with zeros)."""
    if node.op_type != "Conv" or not is_default_domain(node.domain) or len(node.input) < 2:
        return None
    if node.input[1] in constants:  # ONNX Runtime's own transformer reorders constant weights
        return None
    a = _attrs(node)
    w = shapes.get(node.input[1])
    x = shapes.get(node.input[0])
    if w is None or x is None or len(w) != 4 or len(x) != 4 or None in w or x[1] is None:
        return None
    channels, group = w[0], int(a.get("group", 1))
    if group != channels or w[1] != 1 or x[1] != channels or channels % (4 if pad else block):
        return None
    if a.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
        return None
    kernel = list(a.get("kernel_shape", w[2:]))
    if kernel != w[2:]:
        return None
    return channels, kernel


def depthwise_to_nchwc(model: onnx.ModelProto, block: int, pad: bool = False) -> tuple[onnx.ModelProto, int]:
    """A copy of ``model`` with each eligible depthwise ``Conv`` of its main graph run by the NCHWc
    kernels at ``block`` channels (see the module docstring), and how many were rewritten. With
    ``pad``, channels that are a multiple of 4 but not of ``block`` are padded to it."""
    shapes = _shapes(model)
    constants = {t.name for t in model.graph.initializer}
    constants |= {o for n in model.graph.node if n.op_type == "Constant" for o in n.output}
    out = copy_model(model)
    nodes: list = []
    inits: list = []
    count = 0
    for i, node in enumerate(out.graph.node):
        found = _eligible(node, shapes, constants, block, pad)
        if found is None:
            nodes.append(node)
            continue
        channels, kernel = found
        prefix = f"nchwc{i}.{node.output[0]}"
        a = _attrs(node)
        weight, padded = _reordered(nodes, inits, node.input[1], channels, kernel, block, prefix)
        extra = [node.input[2]] if len(node.input) > 2 and node.input[2] else []
        if extra and padded != channels:
            pads = numpy_helper.from_array(np.array([0, padded - channels], np.int64), f"{prefix}.bpads")
            inits.append(pads)
            nodes.append(helper.make_node("Pad", [extra[0], pads.name], [f"{prefix}.b"], name=f"{prefix}.b"))
            extra = [f"{prefix}.b"]
        nodes += [
            helper.make_node("ReorderInput", [node.input[0]], [f"{prefix}.x"], name=f"{prefix}.x", domain=NCHWC),
            helper.make_node("Conv", [f"{prefix}.x", weight, *extra], [f"{prefix}.y"], name=f"{prefix}.conv",
                             domain=NCHWC, group=padded, kernel_shape=kernel,
                             pads=list(a.get("pads", [0] * 4)), strides=list(a.get("strides", [1, 1])),
                             dilations=list(a.get("dilations", [1, 1]))),
            helper.make_node("ReorderOutput", [f"{prefix}.y"], [node.output[0]], name=f"{prefix}.out",
                             domain=NCHWC, channels=channels),
        ]
        count += 1
    if count:
        del out.graph.node[:]
        out.graph.node.extend(nodes)
        out.graph.initializer.extend(inits)
        if not any(o.domain == NCHWC for o in out.opset_import):
            out.opset_import.append(helper.make_opsetid(NCHWC, 1))
    return out, count


def _probe_model(channels: int) -> tuple[onnx.ModelProto, dict]:
    """A stride-2 depthwise 3x3 ``Conv`` with bias, weight an input, and its feeds."""
    f = onnx.TensorProto.FLOAT
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w", "b"], ["y"], group=channels, pads=[1, 0, 1, 2], strides=[2, 1])],
        "probe", [helper.make_tensor_value_info("x", f, [2, channels, 7, 6]),
                  helper.make_tensor_value_info("w", f, [channels, 1, 3, 3]),
                  helper.make_tensor_value_info("b", f, [channels])],
        [helper.make_tensor_value_info("y", f, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 7
    rng = np.random.default_rng(0)
    feeds = {"x": rng.standard_normal((2, channels, 7, 6)).astype(np.float32),
             "w": rng.standard_normal((channels, 1, 3, 3)).astype(np.float32),
             "b": rng.standard_normal(channels).astype(np.float32)}
    return model, feeds


def _reproduces(model: onnx.ModelProto, feeds: dict, block: int, pad: bool) -> bool:
    """Whether ``model``'s depthwise Conv rewritten at ``block`` gives what the plain one gives."""
    rt = ort()
    options = rt.SessionOptions()
    options.intra_op_num_threads = 1
    options.log_severity_level = 3
    rewritten, count = depthwise_to_nchwc(model, block, pad)
    if not count:
        return False
    try:
        want = rt.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"]).run(None, feeds)
        got = rt.InferenceSession(rewritten.SerializeToString(), options,
                                  providers=["CPUExecutionProvider"]).run(None, feeds)
    except Exception:  # noqa: BLE001 - no NCHWc kernels in this build (or not this case): a plain Conv it stays
        return False
    return got[0].shape == want[0].shape and bool(np.allclose(got[0], want[0], rtol=1e-5, atol=1e-5))


@functools.lru_cache(maxsize=None)
def nchwc_block() -> int | None:
    """The NCHWc block size this process's ONNX Runtime and CPU use, or ``None`` where none
    reproduces the plain ``Conv`` (found once, by running a probe; see the module docstring)."""
    for block in _BLOCKS:
        if _reproduces(*_probe_model(2 * block), block, False):
            return block
    return None


@functools.lru_cache(maxsize=None)
def nchwc_pads(block: int) -> bool:
    """Whether channels that are a multiple of 4, not of ``block``, can be padded to it (probed once)."""
    return _reproduces(*_probe_model(block + 4), block, True)


def nchwc_session_model(model: onnx.ModelProto, device: str) -> onnx.ModelProto:
    """The model a step's session runs: on the CPU, with depthwise ``Conv`` nodes on the NCHWc
    kernels where this machine has them (see the module docstring); otherwise ``model`` itself."""
    if device != "cpu" or not any(n.op_type == "Conv" and is_default_domain(n.domain) for n in model.graph.node):
        return model
    block = nchwc_block()
    if block is None:
        return model
    return depthwise_to_nchwc(model, block, nchwc_pads(block))[0]
