"""``threads="auto"``: ONNX Runtime's intra-op thread count chosen from the work of one call.

ONNX Runtime runs small models faster on one intra-op thread: handing each kernel to a thread pool
costs more than the second core gives back. Large ones gain from every core. The choice is made
from the multiply-add work of one call (a training step or an inference run): the FLOPs of the
graph's ``Gemm``, ``MatMul``, ``Conv``, ``ConvTranspose`` and ``LSTM``/``GRU``/``RNN`` nodes at the
actual input shapes, three times the forward pass for a training step (forward, input gradients,
weight gradients). Below :data:`AUTO_THRESHOLD_FLOPS` one thread, from it every core.
"""

from __future__ import annotations

import os

import numpy as np
import onnx
from onnx import ModelProto

from onnxforge.runtime.errors import ConfigError
from onnxforge.runtime.modelio.protos import copy_model

__all__ = ["AUTO_THRESHOLD_FLOPS", "forward_flops", "auto_threads", "auto_batch_shapes", "resolve_threads"]

# measured on the project's 2-core machine (ONNX Runtime 1.19.2, raw training artifacts, AdamW):
# a 64-128-10 MLP (3.6e6 per step) ran 0.86x as fast on 2 threads as on 1, the 16-32 ConvNet
# (3.2e7) 0.78x, the unrolled T20 h64 LSTM (1.5e8) 0.99x, a 256-512-512-10 MLP at batch 128 (3.1e8)
# 1.21x, the 784-1024-1024-10 MLP at batch 256 (2.9e9) 1.53x
AUTO_THRESHOLD_FLOPS = 2.0e8


def _dims(value_info) -> list[int] | None:
    t = value_info.type.tensor_type
    if not t.HasField("shape"):
        return None
    out = []
    for d in t.shape.dim:
        if not d.HasField("dim_value") or d.dim_value <= 0:
            return None
        out.append(int(d.dim_value))
    return out


def forward_flops(model: ModelProto, shapes: dict[str, tuple]) -> float | None:
    """FLOPs (2 per multiply-add) of one forward pass with graph inputs of ``shapes``, counting the
    matrix-product and convolution nodes; ``None`` when shape inference cannot size them."""
    m = copy_model(model)
    inits = {t.name for t in m.graph.initializer}
    for inp in m.graph.input:
        if inp.name in inits or inp.name not in shapes:
            continue
        dims = inp.type.tensor_type.shape.dim
        shape = shapes[inp.name]
        if len(dims) != len(shape):
            return None
        for d, n in zip(dims, shape):
            d.ClearField("dim_param")
            d.dim_value = int(n)
    try:
        m = onnx.shape_inference.infer_shapes(m, strict_mode=False, data_prop=True)
    except Exception:  # noqa: BLE001 - a custom op or a malformed graph: no estimate
        return None
    known = {v.name: _dims(v) for v in (*m.graph.input, *m.graph.value_info, *m.graph.output)}
    known.update({t.name: list(t.dims) for t in m.graph.initializer})
    # where shape inference loses a product's rows (shapes computed at run time, e.g. a Pad to a
    # fixed length), rows are guessed as examples x sequence length: the longest non-batch axis
    # of a token input ([N, T] ids) or axis 1 of a rank-3 input ([N, T, features])
    examples = seq = 1
    for name, shape in shapes.items():
        if name in inits or not shape:
            continue
        examples = max(examples, int(shape[0]))
        is_int = any(i.name == name and i.type.tensor_type.elem_type in (6, 7) for i in m.graph.input)
        if is_int and len(shape) == 2:
            seq = max(seq, int(shape[1]))
        elif len(shape) == 3:
            seq = max(seq, int(shape[1]))
    weights = {t.name: list(t.dims) for t in m.graph.initializer}
    total = 0.0
    for node in m.graph.node:
        ins = [known.get(n) if n else None for n in node.input]
        outs = [known.get(n) for n in node.output]
        op = node.op_type
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        if op in ("MatMul", "Gemm"):
            a, y = ins[0], outs[0]
            if not a or not y:
                b = weights.get(node.input[1]) if len(node.input) > 1 else None  # a malformed node has fewer
                if b and len(b) == 2:  # a learned weight [K, N] (Gemm may hold it as [N, K]): guessed rows
                    total += 2.0 * examples * seq * b[0] * b[1]
                    continue
                if node.input[1] not in weights:
                    continue  # a product of two activations of unknown sizes (attention): left out
                return None
            k = a[-2] if op == "Gemm" and attrs.get("transA", 0) else a[-1]
            total += 2.0 * float(np.prod(y)) * k
        elif op in ("Conv", "ConvTranspose"):
            x, w, y = ins[0], ins[1], outs[0]
            if not x or not w or not y:
                return None
            # Conv: every output element sums Cin/group * kernel products; ConvTranspose: every input element
            # scatters into Cout/group * kernel outputs (w is [Cin, Cout/group, k...])
            per = float(np.prod(w[1:]))
            total += 2.0 * (float(np.prod(y)) if op == "Conv" else float(np.prod(x))) * per
        elif op in ("LSTM", "GRU", "RNN"):
            x, w = ins[0], ins[1]
            if not x or not w:
                return None
            layout = attrs.get("layout", 0)
            steps, batch = (x[0], x[1]) if layout == 0 else (x[1], x[0])
            directions, gates_hidden, inputs = w
            hidden = attrs.get("hidden_size") or gates_hidden // {"LSTM": 4, "GRU": 3, "RNN": 1}[op]
            total += 2.0 * directions * steps * batch * gates_hidden * (inputs + hidden)
    return total


def auto_threads(model: ModelProto, shapes: dict[str, tuple], *, training: bool) -> tuple[int | None, float | None]:
    """(intra-op threads, FLOPs of one call): 1 below :data:`AUTO_THRESHOLD_FLOPS`, else every core.
    Without an estimate the thread count is ``None`` (ONNX Runtime's default: every physical core)."""
    flops = forward_flops(model, shapes)
    if flops is None:
        return None, None
    work = 3.0 * flops if training else flops
    return (1 if work < AUTO_THRESHOLD_FLOPS else (os.cpu_count() or 1)), work


def check_threads(threads) -> None:
    if threads is None or threads == "auto":
        return
    if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or threads < 1:
        raise ConfigError(f"threads must be 'auto', None (ONNX Runtime's default) or a positive integer; got {threads!r}")


def resolve_threads(threads, model: ModelProto, shapes: dict[str, tuple], *, training: bool) -> int | None:
    """The intra-op thread count for ``threads`` ("auto", ``None`` or a positive integer)."""
    check_threads(threads)
    if threads == "auto":
        return auto_threads(model, shapes, training=training)[0]
    return None if threads is None else int(threads)


def auto_batch_shapes(model: ModelProto) -> dict[str, tuple]:
    """Input shapes of one inference call: the model's fixed sizes, 1 for every free dimension."""
    inits = {t.name for t in model.graph.initializer}
    shapes = {}
    for inp in model.graph.input:
        if inp.name in inits or not inp.type.tensor_type.HasField("shape"):
            continue
        shapes[inp.name] = tuple(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else 1
                                 for d in inp.type.tensor_type.shape.dim)
    return shapes
