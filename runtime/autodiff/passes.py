"""Rewrites of a model that training with standard ONNX gradients needs."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from onnxforge.runtime.autodiff._values import _infer, prepare
from onnxforge.runtime.autodiff._emitter import attr
from onnxforge.runtime.autodiff._errors import AutodiffError

__all__ = ["batchnorm_training_form"]


def batchnorm_training_form(model, *, outputs: bool = True) -> tuple[onnx.ModelProto, dict]:
    """Rewrite every ``BatchNormalization`` into primitives that normalise with the batch's own
    statistics (mean and biased variance over all axes but 1), as training does, and compute the
    updated running statistics ``running * momentum + batch * (1 - momentum)`` (ONNX's momentum
    convention; biased variance, as ONNX Runtime training). The running statistics are state: the
    gradient never flows into them (they are not on any path to Y).

    Returns ``(model, {running_stat_name: updated_value_name})``; with ``outputs`` the updated
    values are also graph outputs. Primitives, not ``training_mode=1``: ONNX Runtime 1.27 computes
    that form wrongly unless momentum is 1 (microsoft/onnxruntime#29790). Y is the inference kernel on
    the batch's mean and variance (one pass over X; the statistics take four, and the backward reuses
    the centred X, itself X - mean by the inference kernel: ONNX Runtime's per-channel broadcast Sub
    is 1.2-3.2x slower than it, the more so the smaller H*W): differentiated as a whole by the BatchNormalization rule, which
    recognises the pattern (``ops/_norm.batch_statistics``)."""
    model = prepare(model)
    graph = model.graph
    info = _infer(model)
    opset = max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    updates = {}
    new_nodes, new_inits = [], []
    taken = {n for node in graph.node for n in list(node.output) + list(node.input)}
    count = [0]

    def fresh(base):
        while True:
            count[0] += 1
            name = f"{base}/bn_{count[0]}"
            if name not in taken:
                taken.add(name)
                return name

    def const(arr):
        name = fresh("const")
        new_inits.append(numpy_helper.from_array(np.asarray(arr), name))
        return name

    def op(kind, inputs, **attrs):
        out = fresh(kind.lower())
        new_nodes.append(helper.make_node(kind, inputs, [out], name=out, **attrs))
        return out

    for node in graph.node:
        if node.op_type != "BatchNormalization" or node.domain not in ("", "ai.onnx"):
            new_nodes.append(node)
            continue
        x, scale, bias, mean, var = node.input[:5]
        dims = info.get(x, (None, None))[1]
        if dims is None:
            raise AutodiffError(f"BatchNormalization {node.name!r}: the rank of {x!r} is unknown")
        r = len(dims)
        dtype = helper.tensor_dtype_to_np_dtype(info[x][0])
        eps = attr(node, "epsilon", 1e-5)
        momentum = attr(node, "momentum", 0.9)
        axes = [0] + list(range(2, r))
        base = node.name or node.output[0]

        def reduce(kind, t, axes=axes):
            if opset >= 18:
                return op(kind, [t, const(np.array(axes, np.int64))], keepdims=0)
            return op(kind, [t], keepdims=0, axes=axes)

        # the pattern ops/_norm.batch_statistics recognises (see there): mean [C], d = X - mean,
        # var [C] = ReduceMean(d * d); Y by the inference kernel on the batch's statistics
        mu = reduce("ReduceMean", x)
        if isinstance(dims[1], int):  # X - mean by the inference kernel (scale 1, bias 0, var 1, epsilon 0)
            ones, zeros = (op("Constant", [], value=numpy_helper.from_array(np.full(dims[1], v, dtype))) for v in (1, 0))
            d = op("BatchNormalization", [x, ones, zeros, mu, ones], epsilon=0.0)
        else:
            d = op("Sub", [x, op("Unsqueeze", [mu, const(np.array(list(range(1, r - 1)), np.int64))]) if r > 2 else mu])
        v = reduce("ReduceMean", op("Mul", [d, d]))
        new_nodes.append(helper.make_node("BatchNormalization", [x, scale, bias, mu, v], [node.output[0]],
                                          name=fresh(base), epsilon=eps))
        m_keep, m_new = const(np.array(momentum, dtype)), const(np.array(1 - momentum, dtype))
        for stat, batch, out_idx in ((mean, mu, 1), (var, v, 2)):
            upd = op("Add", [op("Mul", [stat, m_keep]), op("Mul", [batch, m_new])])
            name = node.output[out_idx] if len(node.output) > out_idx and node.output[out_idx] else f"{stat}_updated"
            if name in taken and name not in node.output:
                name = fresh(f"{stat}_updated")
            new_nodes.append(helper.make_node("Identity", [upd], [name], name=fresh(base)))
            updates[stat] = name
    del graph.node[:]
    graph.node.extend(new_nodes)
    graph.initializer.extend(new_inits)
    if outputs:
        have = {o.name for o in graph.output}
        for stat, name in updates.items():
            if name not in have:
                elem, dims = info.get(stat, (None, None))
                graph.output.append(helper.make_tensor_value_info(name, elem, dims))
    return model, updates

