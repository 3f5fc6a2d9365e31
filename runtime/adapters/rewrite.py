"""The graph rewrites of LoRA: adapters into a model, and adapters merged back into its weights.

:func:`with_adapters` gives every node that multiplies by a target the low-rank branch
``y = x @ M + factor * (x @ A) @ B`` (see :mod:`.lora`), with the adapter tensors either as
initialisers (the training form: ``factor`` is ``scale`` times Gemm's ``alpha``, B unscaled, as in
PyTorch) or as graph inputs (the serving form, ``model.lora.onnx``: the stored B has the scale
folded in, so ``factor`` is Gemm's ``alpha`` only). In the serving form each adapter input also has
a default initialiser of rank 1 holding zeros (``[K, 1]`` and ``[1, N]``; rank 0 would be exact too,
but ONNX Runtime fuses the branch's MatMul and Add into a Gemm that refuses an inner dimension of 0):
run without an adapter, the branch adds zeros and the model answers as its base; ONNX Runtime's ``RunOptions.add_active_adapter`` (1.20+)
feeds an adapter's tensors by name.

:func:`merged` adds ``A @ B`` to each target weight, in the weight's own layout: a plain model.
"""

from __future__ import annotations

import numpy as np
from onnx import ModelProto, TensorProto, helper, numpy_helper

from onnxforge.runtime.adapters.lora import Target, adapter_names
from onnxforge.runtime.passes.base import copy_model

__all__ = ["with_adapters", "merged", "merged_weight", "adapter_inputs", "RANK_DIM"]

RANK_DIM = "lora_rank"


def _branches(model: ModelProto, targets: list[Target], factor_of, prefix: str) -> None:
    """Insert the low-rank branch after every use of every target, in one pass over the nodes (the
    uses' indices are the original graph's; nodes stay in topological order)."""
    graph = model.graph
    uses = {u.node: (t, u) for t in targets for u in t.uses}
    out, consts = [], []
    for k, node in enumerate(list(graph.node)):
        out.append(node)
        if k not in uses:
            continue
        target, use = uses[k]
        a, b = adapter_names(target.weight)
        y = node.output[0]
        node.output[0] = f"{prefix}{y}/base"
        tag = f"{prefix}{target.weight}/{k}"
        xa, d = f"{tag}/xA", f"{tag}/xAB"
        out.append(helper.make_node("MatMul", [node.input[0], a], [xa], name=f"{xa}.node"))
        out.append(helper.make_node("MatMul", [xa, b], [d], name=f"{d}.node"))
        factor = factor_of(use)
        if factor != 1.0:
            c, scaled = f"{tag}/factor", f"{tag}/scaled"
            consts.append(numpy_helper.from_array(np.array(factor, np.float32), c))
            out.append(helper.make_node("Mul", [d, c], [scaled], name=f"{scaled}.node"))
            d = scaled
        out.append(helper.make_node("Add", [node.output[0], d], [y], name=f"{tag}/add.node"))
    del graph.node[:]
    graph.node.extend(out)
    graph.initializer.extend(consts)


def with_adapters(model: ModelProto, targets: list[Target], *, scale: float = 1.0, values: dict | None = None,
                  as_inputs: bool = False, prefix: str = "lora/") -> ModelProto:
    """A copy of ``model`` with the LoRA branch on every target.

    Training form (``values`` given): the adapters are initialisers with those values and the branch
    is multiplied by ``scale``. Serving form (``as_inputs``): the adapters are graph inputs of shape
    ``[K, lora_rank]``/``[lora_rank, N]`` (any rank: one served model takes adapters of any rank) with zero-valued
    rank-1 default initialisers; the branch is not scaled (the stored B carries the scale)."""
    out = copy_model(model)
    _branches(out, targets, (lambda u: u.gain) if as_inputs else (lambda u: scale * u.gain), prefix)
    for t in targets:
        a, b = adapter_names(t.weight)
        if as_inputs:
            r = RANK_DIM
            out.graph.input.extend([helper.make_tensor_value_info(a, TensorProto.FLOAT, [t.k, r]),
                                    helper.make_tensor_value_info(b, TensorProto.FLOAT, [r, t.n])])
            out.graph.initializer.extend([numpy_helper.from_array(np.zeros((t.k, 1), np.float32), a),
                                          numpy_helper.from_array(np.zeros((1, t.n), np.float32), b)])
        else:
            if values is None:
                raise ValueError("the training form of a LoRA rewrite needs the adapters' values")
            out.graph.initializer.extend([numpy_helper.from_array(np.asarray(values[a], np.float32), a),
                                          numpy_helper.from_array(np.asarray(values[b], np.float32), b)])
    return out


def adapter_inputs(model: ModelProto) -> dict[str, tuple]:
    """``{name: shape}`` of the adapter inputs of a serving-form model (``*.lora_A``/``*.lora_B``)."""
    found = {}
    for i in model.graph.input:
        if i.name.endswith((".lora_A", ".lora_B")):
            found[i.name] = tuple(d.dim_value if d.HasField("dim_value") else d.dim_param
                                  for d in i.type.tensor_type.shape.dim)
    return found


def merged_weight(weight: np.ndarray, target: Target, a: np.ndarray, b_scaled: np.ndarray) -> np.ndarray:
    """``W + A @ B`` in ``W``'s layout (float64 sum, cast to ``W``'s type)."""
    delta = a.astype(np.float64) @ b_scaled.astype(np.float64)
    return (weight.astype(np.float64) + target.delta_in_layout(delta)).astype(weight.dtype)


def merged(model: ModelProto, targets: list[Target], adapters: dict[str, np.ndarray], weights=None) -> ModelProto:
    """A copy of ``model`` whose target weights are ``W + A @ B`` (``adapters``: the stored form,
    scale folded into B). ``weights(name)`` gives a weight's values where the model does not hold
    them itself (external data); by default they are read from the initialiser."""
    out = copy_model(model)
    index = {t.name: i for i, t in enumerate(out.graph.initializer)}
    for t in targets:
        a, b = adapter_names(t.weight)
        tensor = out.graph.initializer[index[t.weight]]
        w = weights(t.weight) if weights is not None else numpy_helper.to_array(tensor)
        tensor.CopyFrom(numpy_helper.from_array(merged_weight(w, t, adapters[a], adapters[b]), t.weight))
    return out
