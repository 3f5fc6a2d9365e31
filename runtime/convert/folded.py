"""Where an export folded parameters away, found from the ONNX file alone.

Exporters in evaluation mode fold batch normalisation into the convolution before it (the
dynamo exporter's optimizer, ``torch.onnx.export(..., optimize=True)``, and the TorchScript
exporter's constant folding): the result computes the same outputs, but the batch norm's scale,
shift and statistics are gone and the convolution's weight is a product of them. Training such a
file trains a different parameterisation (no batch statistics, no ``gamma``/``beta``) of what the
PyTorch model had. Weights held in ``Constant`` nodes instead of initialisers are not parameters
at all. What is found:

- ``fused``: a node the onnxscript rewriter marked with a fusion rule (``FuseBatchNormIntoConv``
  and friends, in the node's ``pkg.onnxscript.rewriter.rule_name`` metadata), or a node the
  dynamo exporter's name scopes place inside a batch-norm module while the graph has no
  ``BatchNormalization`` there;
- ``computed``: a Conv/ConvTranspose weight named ``onnx::Conv_N`` (the TorchScript exporter's
  name for a tensor it computed by folding; a plain convolution keeps ``conv.weight``);
- ``constant``: a Conv/ConvTranspose/Gemm/MatMul/BatchNormalization float weight produced by a
  ``Constant`` node.

:func:`folded_parameters` lists the findings, :func:`folded_line` says it in one line with the fix.
"""

from __future__ import annotations

from dataclasses import dataclass

import onnx

__all__ = ["Folding", "folded_parameters", "folded_line", "FIX"]

_RULE_KEY = "pkg.onnxscript.rewriter.rule_name"
_SCOPES_KEY = "pkg.torch.onnx.name_scopes"
_HIERARCHY_KEY = "pkg.torch.onnx.class_hierarchy"
_WEIGHTED = {"Conv": 1, "ConvTranspose": 1, "Gemm": 1, "MatMul": 1, "BatchNormalization": 1}
_FLOAT = {onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16}
FIX = ("export in training mode (model.train() before torch.onnx.export), or with optimize=False and "
       "do_constant_folding=False, or save the PyTorch program (torch.export.save) and run "
       "'onnxforge convert MODEL.pt2 -o MODEL.onnx --for-training', which keeps every parameter")


@dataclass(frozen=True)
class Folding:
    node: str      # the node that holds what was folded
    op: str        # its op
    kind: str      # "fused" | "computed" | "constant"
    detail: str    # what was folded, in words

    def __str__(self) -> str:
        return f"{self.op} ({self.node}): {self.detail}"


def _meta(node) -> dict:
    return {p.key: p.value for p in node.metadata_props}


def folded_parameters(model: onnx.ModelProto) -> list[Folding]:
    """Every place where ``model``'s export folded parameters away (see the module docstring)."""
    graph = model.graph
    found: list[Folding] = []
    has_bn = any(n.op_type == "BatchNormalization" for n in graph.node)
    constants = {o: n for n in graph.node if n.op_type == "Constant" for o in n.output}
    for k, node in enumerate(graph.node):
        name = node.name or f"#{k}"
        meta = _meta(node)
        rule = meta.get(_RULE_KEY, "")
        scopes = meta.get(_SCOPES_KEY, "") + meta.get(_HIERARCHY_KEY, "")
        if "BatchNorm" in rule or ("Fuse" in rule and node.op_type in _WEIGHTED):
            found.append(Folding(name, node.op_type, "fused", f"the exporter's optimizer applied {rule}: "
                                 "batch norm's weight, bias and statistics were folded into this node's weight"))
            continue
        if node.op_type in ("Conv", "ConvTranspose", "Gemm") and not has_bn and "batchnorm" in scopes.lower() \
                and "batch_norm" in scopes:
            found.append(Folding(name, node.op_type, "fused", "it stands where the PyTorch model had a batch norm: "
                                 "the batch norm was folded into this node's weight"))
            continue
        if node.op_type not in _WEIGHTED or len(node.input) <= 1:
            continue
        weight = node.input[1]
        if node.op_type in ("Conv", "ConvTranspose") and weight.startswith(f"onnx::{node.op_type}_"):
            found.append(Folding(name, node.op_type, "computed", f"its weight '{weight}' is a tensor the exporter "
                                 "computed by constant folding (batch norm folded into the convolution)"))
            continue
        const = constants.get(weight)
        if const is not None and _float_constant(const):
            found.append(Folding(name, node.op_type, "constant", f"its weight '{weight}' is a Constant node, "
                                 "not an initialiser: it cannot be trained"))
    return found


def _float_constant(node) -> bool:
    for a in node.attribute:
        if a.name == "value":
            return a.t.data_type in _FLOAT and len(a.t.dims) > 0
        if a.name == "value_floats":
            return True
    return False


def folded_line(model: onnx.ModelProto) -> str | None:
    """One line saying where the export folded parameters away and how to get them back, or None."""
    found = folded_parameters(model)
    if not found:
        return None
    kinds = {f.kind for f in found}
    what = "batch norm folded into" if kinds & {"fused", "computed"} else "weights held as constants in"
    places = ", ".join(f"{f.op} ({f.node})" for f in found[:3]) + (f" and {len(found) - 3} more" if len(found) > 3 else "")
    return (f"folded export: {what} {len(found)} node{'s' if len(found) > 1 else ''} ({places}); training it "
            f"trains the folded form, not the PyTorch model's parameters. Fix: {FIX}")
