"""Rewrites of a built step to nodes ONNX Runtime's CPU kernels run faster, with equal results.

* ``Where(c, g, 0)`` (a masked gradient: Dropout's, Clip's, Where's; Relu's rule writes the
  multiplication itself) becomes ``Mul(g, Cast(c))``: ONNX Runtime's ``Where`` with a broadcast
  scalar is several times slower than a multiplication (measured on the 2-core machine, one
  thread: 3.2 ms against 0.60 ms on a [256, 1024] tensor, 33 us against 22 us on [64, 128]). The
  values are equal wherever ``g`` is finite.
* ``ReduceSum(g, axes=[0], keepdims=0)`` of a 2-D float ``g`` (a bias gradient: a Gemm's or a
  MatMul's ``C`` summed over the batch) becomes ``MatMul(ones[N], g)``, ``ones`` made from
  ``g``'s first dim (Shape, ConstantOfShape), once for all gradients whose first dim is the same
  (the batch). Measured alternating in one
  process, one thread: 6 us against 9 us on [64, 128], 20 us against 32 us on [256, 1024], equal
  on [64, 10]; the 64-128-10 MLP's AdamW step 1.05x. The sum's order differs (within float
  rounding of the ReduceSum).

:func:`fold_sgd_updates` (SGD steps only): ``p - g`` where ``g`` (the rate already in it) comes
from a ``Gemm`` without ``C`` that nothing else reads becomes that ``Gemm`` with ``C = p``,
``alpha = -alpha``, ``beta = 1``: the weight gradient is accumulated into a copy of the weight, no
gradient tensor written and read back, one node less per weight (results equal within float
rounding: MLAS adds the product into ``C`` block by block).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from onnxforge.runtime.modelio.protos import dims

__all__ = ["faster_kernels", "fold_sgd_updates"]


def _zero_scalars(model: onnx.ModelProto) -> set:
    return {t.name for t in model.graph.initializer
            if t.data_type == TensorProto.FLOAT and not list(t.dims) and float(numpy_helper.to_array(t)) == 0.0}


def _axis0(model: onnx.ModelProto) -> set:
    """Names of int64 initialisers holding exactly ``[0]``."""
    return {t.name for t in model.graph.initializer if t.data_type == TensorProto.INT64
            and list(t.dims) == [1] and int(numpy_helper.to_array(t)[0]) == 0}


def _float_matrices(model: onnx.ModelProto) -> dict:
    """2-D float tensors (as shape inference finds them) -> their first dim (a number, a symbol or
    None when unknown); none when shape inference fails (the sums are then left as they are)."""
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except onnx.shape_inference.InferenceError:
        return {}
    values = list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output)
    out: dict[str, int | str | None] = {}
    for v in values:
        t = v.type.tensor_type
        if t.elem_type == TensorProto.FLOAT and t.HasField("shape") and len(t.shape.dim) == 2:
            out[v.name] = dims(v)[0]
    return out


def _is_batch_sum(node, axis0: set, matrices: dict) -> bool:
    keep = next((a.i for a in node.attribute if a.name == "keepdims"), 1)
    noop = next((a.i for a in node.attribute if a.name == "noop_with_empty_axes"), 0)
    return (node.op_type == "ReduceSum" and node.domain in ("", "ai.onnx") and len(node.input) == 2
            and node.input[1] in axis0 and keep == 0 and noop == 0 and node.input[0] in matrices)


def faster_kernels(model: onnx.ModelProto) -> onnx.ModelProto:
    """Rewrite ``model`` in place (see the module docstring); returns it."""
    zeros, axis0 = _zero_scalars(model), _axis0(model)
    sums = [n for n in model.graph.node if n.op_type == "ReduceSum" and len(n.input) == 2 and n.input[1] in axis0]
    matrices = _float_matrices(model) if sums else {}
    ones_value = numpy_helper.from_array(np.ones(1, np.float32))
    made: dict[int | str, str] = {}  # first dim -> the ones vector already made for it
    nodes = []
    for node in model.graph.node:
        if node.op_type == "Where" and node.domain in ("", "ai.onnx") and len(node.input) == 3 \
                and node.input[2] in zeros and node.input[1] not in zeros:
            cond, value, _ = node.input
            mask = f"{node.output[0]}.mask"
            nodes.append(helper.make_node("Cast", [cond], [mask], name=f"{mask}.node", to=TensorProto.FLOAT))
            nodes.append(helper.make_node("Mul", [value, mask], list(node.output), name=node.name or f"{mask}.mul"))
            continue
        if _is_batch_sum(node, axis0, matrices):
            dim = matrices[node.input[0]]
            ones = made.get(dim) if dim is not None else None
            if ones is None:
                ones = f"{node.output[0]}.ones"
                nodes.append(helper.make_node("Shape", [node.input[0]], [f"{ones}.n"], name=f"{ones}.shape", end=1))
                nodes.append(helper.make_node("ConstantOfShape", [f"{ones}.n"], [ones], name=f"{ones}.node",
                                              value=ones_value))
                if dim is not None:
                    made[dim] = ones
            nodes.append(helper.make_node("MatMul", [ones, node.input[0]], list(node.output),
                                          name=node.name or f"{node.output[0]}.matmul"))
            continue
        nodes.append(node)
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    return model


def fold_sgd_updates(model: onnx.ModelProto, updates: dict) -> int:
    """Fold SGD's ``Sub(p, g) -> out`` into the ``Gemm`` computing ``g`` (see the module docstring),
    in place, for the ``updates`` given (output name -> parameter). Returns the number folded."""
    producers = {o: n for n in model.graph.node for o in n.output}
    readers: dict[str, int] = {}
    for n in model.graph.node:
        for i in n.input:
            readers[i] = readers.get(i, 0) + 1
    outputs = {o.name for o in model.graph.output}
    dropped = []
    for node in model.graph.node:
        if node.op_type != "Sub" or node.domain not in ("", "ai.onnx") or node.output[0] not in updates:
            continue
        p, g = node.input
        gemm = producers.get(g)
        if (p != updates[node.output[0]] or gemm is None or gemm.op_type != "Gemm" or len(gemm.input) > 2
                or readers.get(g, 0) != 1 or g in outputs):
            continue
        alpha = next((a.f for a in gemm.attribute if a.name == "alpha"), 1.0)
        keep = [a for a in gemm.attribute if a.name not in ("alpha", "beta")]
        del gemm.attribute[:]
        gemm.attribute.extend([*keep, helper.make_attribute("alpha", -alpha), helper.make_attribute("beta", 1.0)])
        gemm.input.append(p)
        gemm.output[0] = node.output[0]
        dropped.append(node)
    for node in dropped:
        model.graph.node.remove(node)
    return len(dropped)
