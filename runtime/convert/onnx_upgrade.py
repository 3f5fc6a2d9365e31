"""ONNX to ONNX: bring a model to an opset and form the installed ONNX Runtime can run and train.

Steps, in order: initialisers listed as graph inputs (IR 3) become plain initialisers; the default
opset is converted (``onnx.version_converter``) to the requested one, or, without a request,
opsets below 13 go to 17 (onnxforge's own, whose node forms the training notes measured) and
opsets above what the runtime accepts come down to its maximum; model-local functions are
inlined; ops without a gradient in ONNX Runtime training that have an equivalent with one are
rewritten (``Sum`` into ``Add``s); ``Constant`` nodes and constant subgraphs are folded into initialisers (so weights kept
as ``Constant`` nodes become trainable parameters); the IR version is lowered to what the runtime
loads; the result passes ``onnx.checker``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
from onnx import ModelProto

from onnxforge.runtime.passes.fold import constant_value, fold_constants
from onnxforge.runtime.errors import ConversionError
from onnxforge.runtime.ort.distribution import runtime_info
from onnxforge.runtime.passes.gradient_form import trainable_parameters

__all__ = ["upgrade", "default_target_opset", "MIN_UPGRADED_OPSET", "UPGRADE_TO"]

MIN_UPGRADED_OPSET = 13   # below this, node forms differ from what the trainer and the converters expect
UPGRADE_TO = 17           # onnxforge's own opset
_IR_FOR_OPSET = [(21, 10), (19, 9), (15, 8), (13, 7), (9, 4), (7, 3), (1, 3)]


def _opset(model: ModelProto) -> int:
    return next((i.version for i in model.opset_import if i.domain in ("", "ai.onnx")), 0)


def _limits() -> tuple[int, int]:
    info = runtime_info()
    return info.max_ir_version, info.max_opset


def default_target_opset(opset: int, max_opset: int) -> int:
    if opset < MIN_UPGRADED_OPSET:
        return min(UPGRADE_TO, max_opset)
    return min(opset, max_opset)


def _ir_for(opset: int, max_ir: int) -> int:
    for min_opset, ir in _IR_FOR_OPSET:
        if opset >= min_opset:
            return min(ir, max_ir)
    return 3


def _legacy_broadcast(model: ModelProto) -> None:
    """Opsets 1-6 broadcast ``B`` against ``A`` from ``axis`` (``broadcast=1``), and ``PRelu``'s
    slope per channel (axis 1); give ``B`` numpy-style trailing 1s (a reshaped initialiser, or an
    ``Unsqueeze``) so the version converter has nothing to guess."""
    from onnx import numpy_helper

    ops = {"Add", "Sub", "Mul", "Div", "Pow", "And", "Or", "Xor", "Equal", "Greater", "Less"}
    inits = {t.name: t for t in model.graph.initializer}
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
        ranks = {v.name: len(v.type.tensor_type.shape.dim) for v in
                 list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output)
                 if v.type.tensor_type.HasField("shape")}
    except Exception:  # noqa: BLE001
        ranks = {}
    ranks.update({name: len(t.dims) for name, t in inits.items()})
    nodes: list = []
    for node in model.graph.node:
        attrs = {a.name: a for a in node.attribute}
        axis = None
        if node.op_type in ops and "broadcast" in attrs and attrs["broadcast"].i == 1:
            axis = attrs["axis"].i if "axis" in attrs else None
            for name in ("axis", "broadcast"):
                if name in attrs:
                    node.attribute.remove(attrs[name])
        elif node.op_type == "PRelu" and len(node.input) > 1 and ranks.get(node.input[1], 0) == 1:
            axis = 1
        if axis is not None:
            a, b = node.input[0], node.input[1]
            if a not in ranks or b not in ranks:
                raise ConversionError(f"node '{node.name or node.op_type}' ({node.op_type}) broadcasts from an axis "
                                      "(opset < 7) over values whose ranks are not known; onnxforge cannot rewrite it")
            axis %= max(ranks[a], 1)
            trailing = ranks[a] - axis - ranks[b]
            if trailing > 0:
                name = f"{b}.broadcast_{len(nodes)}"
                if b in inits:
                    value = numpy_helper.to_array(inits[b])
                    model.graph.initializer.append(numpy_helper.from_array(
                        value.reshape(value.shape + (1,) * trailing), name))
                else:
                    axes = list(range(ranks[b], ranks[b] + trailing))
                    nodes.append(onnx.helper.make_node("Unsqueeze", [b], [name], name=name, axes=axes))
                node.input[1] = name
        nodes.append(node)
    del model.graph.node[:]
    model.graph.node.extend(nodes)


def _trainable_forms(model: ModelProto) -> int:
    """Rewrite ops ONNX Runtime training cannot differentiate into equivalent ones it can (in place):
    ``Sum`` of n inputs becomes a chain of ``Add``. Returns how many nodes were rewritten."""
    nodes, count = [], 0
    for node in model.graph.node:
        if node.op_type == "Sum" and node.domain in ("", "ai.onnx"):
            count += 1
            inputs = list(node.input)
            if len(inputs) == 1:
                nodes.append(onnx.helper.make_node("Identity", inputs, list(node.output), name=node.name))
                continue
            acc = inputs[0]
            for i, other in enumerate(inputs[1:], start=1):
                out = node.output[0] if i == len(inputs) - 1 else f"{node.output[0]}.sum{i}"
                nodes.append(onnx.helper.make_node("Add", [acc, other], [out], name=f"{node.name or node.output[0]}.add{i}"))
                acc = out
        else:
            nodes.append(node)
    if count:
        del model.graph.node[:]
        model.graph.node.extend(nodes)
    return count


def _make_batch_dynamic(model: ModelProto) -> tuple[int, int]:
    """A batch fixed at some size B -> dynamic ``N`` (in place); returns B and how many
    ``Reshape`` targets starting with B were rewritten to copy the batch instead."""
    from onnx import numpy_helper

    inits = {t.name for t in model.graph.initializer}
    fixed: dict[str, int] = {}
    batched = []
    for vi in list(model.graph.input) + list(model.graph.output):
        dims = vi.type.tensor_type.shape.dim
        if vi.name in inits or not dims:
            continue
        if dims[0].HasField("dim_value"):
            fixed[vi.name] = dims[0].dim_value
        batched.append(dims[0])
    sizes = sorted(set(fixed.values()))
    if len(sizes) > 1:
        shown = ", ".join(f"'{k}' {v}" for k, v in fixed.items())
        raise ConversionError(f"--dynamic-batch: the inputs and outputs disagree on their first dimension ({shown}); "
                              "onnxforge makes a batch dynamic only where every input and output has the same one")
    batch = sizes[0] if sizes else 1
    for dim in batched:
        dim.Clear()
        dim.dim_param = "N"
    del model.graph.value_info[:]
    values = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    values.update({n.output[0]: constant_value(n) for n in model.graph.node if n.op_type == "Constant"})
    count, extra = 0, []
    for node in model.graph.node:
        if node.op_type != "Reshape" or len(node.input) < 2 or node.input[1] not in values:
            continue
        shape = np.array(values[node.input[1]], np.int64).reshape(-1)
        allowzero = [a for a in node.attribute if a.name == "allowzero" and a.i]
        if allowzero and 0 in shape:  # a literal 0 dimension: 0 cannot mean "copy" here
            continue
        if shape.size and shape[0] == batch:
            for attr in allowzero:  # no 0 in the target: allowzero changed nothing, and now 0 copies
                node.attribute.remove(attr)
            shape = shape.copy()
            shape[0] = 0  # copy the input's first dimension, the batch
            name = f"{node.input[1]}.batch_{count}"
            extra.append(onnx.helper.make_node("Constant", [], [name], name=f"{name}.const",
                                               value=numpy_helper.from_array(shape, name)))
            node.input[1] = name
            count += 1
    if extra:
        rest = list(model.graph.node)
        del model.graph.node[:]
        model.graph.node.extend(extra + rest)
    return batch, count


def _fill_output_types(model: ModelProto) -> None:
    """Give graph outputs declared without a shape the shape inference finds (the checker needs one)."""
    missing = [o for o in model.graph.output if not o.type.tensor_type.HasField("shape")]
    if not missing:
        return
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:  # noqa: BLE001
        return
    known = {v.name: v for v in list(inferred.graph.value_info) + list(inferred.graph.output)}
    for o in missing:
        v = known.get(o.name)
        if v is not None and v.type.tensor_type.HasField("shape"):
            o.type.CopyFrom(v.type)
        else:
            o.type.tensor_type.shape.SetInParent()
            o.type.tensor_type.shape.dim.add()  # rank unknown to inference: declare one dynamic dim
            o.type.tensor_type.shape.dim.pop()


def upgrade(model: ModelProto, opset: int | None = None, *, fold: bool = True, dynamic_batch: bool = False,
            progress=None) -> tuple[ModelProto, dict]:
    """Return the converted model and a report of what changed (``from_opset``, ``to_opset``,
    ``from_ir``, ``to_ir``, ``folded`` nodes, ``rewritten`` nodes, ``parameters``).

    ``dynamic_batch``: a model exported for a fixed batch B (1, or the 4 of a plain
    ``torch.onnx.export`` example) gets a dynamic first dimension ``N`` on its inputs and outputs,
    and ``Reshape`` targets that start with that B copy the batch instead (0).
    """
    max_ir, max_opset = _limits()
    out = ModelProto()
    out.CopyFrom(model)
    source_opset, source_ir = _opset(out), out.ir_version
    if source_opset == 0:
        raise ConversionError("the model imports no default-domain (ai.onnx) opset; there is nothing to convert")
    target = default_target_opset(source_opset, max_opset) if opset is None else int(opset)
    if not 7 <= target <= max_opset:
        raise ConversionError(f"--opset must be between 7 and {max_opset} (what the installed ONNX Runtime "
                              f"accepts); got {target}")
    # IR 3 models list every initialiser as a graph input too; from IR 4 they need not, and the
    # runtime then treats them as constants it may fold and the trainer as parameters.
    inits = {t.name for t in out.graph.initializer}
    kept_inputs = [i for i in out.graph.input if i.name not in inits]
    del out.graph.input[:]
    out.graph.input.extend(kept_inputs)
    if out.ir_version < 4:
        out.ir_version = 4
    if source_opset < 7:
        _legacy_broadcast(out)
    if progress:
        progress("opset")
    if target != source_opset:
        from onnx import version_converter

        try:
            out = version_converter.convert_version(out, target)
        except Exception as exc:  # noqa: BLE001 - the converter raises several kinds
            ops = sorted({n.op_type for n in model.graph.node})
            raise ConversionError(f"converting opset {source_opset} to {target} failed ({str(exc).splitlines()[0]}); "
                                  f"the model's ops are {', '.join(ops)}") from None
    if out.functions:
        from onnx import inliner

        out = inliner.inline_local_functions(out)
    rewritten = _trainable_forms(out)
    folded = 0
    if fold:
        if progress:
            progress("fold")
        out, folded = fold_constants(out, opset=target)
    fixed_batch, reshapes = _make_batch_dynamic(out) if dynamic_batch else (None, None)
    out.ir_version = _ir_for(target, max_ir)
    for imp in out.opset_import:
        if imp.domain in ("", "ai.onnx"):
            imp.version = target
    _fill_output_types(out)
    try:
        onnx.checker.check_model(out)
    except onnx.checker.ValidationError as exc:
        raise ConversionError(f"the converted model is not valid ONNX: {str(exc).splitlines()[0]}") from None
    report: dict[str, Any] = {"from_opset": source_opset, "to_opset": target, "from_ir": source_ir, "to_ir": out.ir_version,
              "folded": folded, "rewritten": rewritten, "parameters": len(trainable_parameters(out))}
    if reshapes is not None:
        report["dynamic_batch"] = True
        report["fixed_batch"] = fixed_batch
        report["reshapes_rewritten"] = reshapes
    return out, report
