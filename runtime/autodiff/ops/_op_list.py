"""The registry: every op with a rule (each module ``op_<name>.py`` listed once, below), and the ops
known to carry no gradient."""

from __future__ import annotations

import importlib

from onnxforge.runtime.autodiff.ops import _unary
from onnxforge.runtime.autodiff.ops._rule import Rule

__all__ = ["RULES", "NON_DIFFERENTIABLE", "supported_ops"]

_MODULES = (
    "abs", "add", "average_pool", "batch_normalization", "cast", "clip", "concat", "conv",
    "conv_transpose", "div", "dropout", "erf", "exp", "expand", "flatten", "gather",
    "gather_elements", "gemm", "global_average_pool", "global_max_pool", "gru", "identity", "layer_normalization", "leaky_relu", "log",
    "log_softmax", "lstm", "matmul", "max", "max_pool", "min", "mul", "neg",
    "one_hot", "pad", "pow", "range", "reciprocal", "reduce_mean", "reduce_sum", "relu",
    "reshape", "resize", "sigmoid", "slice", "softmax", "softplus", "split", "sqrt",
    "squeeze", "sub", "sum", "tanh", "transpose", "unsqueeze", "where",
    "cast_like", "cum_sum", "compress", "depth_to_space", "einsum", "gather_nd", "instance_normalization", "lp_normalization",
    "mean", "mod", "p_relu", "r_m_s_normalization", "reduce_l1", "reduce_l2", "reduce_log_sum", "reduce_log_sum_exp",
    "reduce_max", "reduce_min", "reduce_prod", "reduce_sum_square", "reverse_sequence", "scatter_elements", "scatter_nd", "space_to_depth",
    "tile", "top_k",
)
# control flow and sequences (one list of their own, so that both kept lists merge cleanly)
_CONTROL_AND_SEQUENCE_MODULES = (
    "split_to_sequence", "sequence_at", "sequence_construct", "sequence_erase", "sequence_insert",
    "concat_from_sequence", "if", "loop", "scan",
)


def _load(name: str) -> Rule:
    module = importlib.import_module(f"onnxforge.runtime.autodiff.ops.op_{name}")
    return module  # a module meets the Rule protocol structurally


RULES: dict[str, Rule] = dict(_unary.TABLE)  # elementwise one-liners, each op once in its table
for _name in _MODULES + _CONTROL_AND_SEQUENCE_MODULES:
    _rule = _load(_name)
    assert _rule.OP_TYPE not in RULES, f"{_rule.OP_TYPE} has two rules"
    RULES[_rule.OP_TYPE] = _rule

# Ops whose outputs carry no gradient: integer/boolean results, shapes, comparisons, random draws,
# and piecewise-constant functions (their derivative is zero where it exists, as in PyTorch).
NON_DIFFERENTIABLE = frozenset({
    "Constant", "ConstantOfShape", "Shape", "Size", "EyeLike", "NonZero",
    "Equal", "Greater", "GreaterOrEqual", "Less", "LessOrEqual", "Not", "And", "Or", "Xor",
    "IsNaN", "IsInf", "ArgMax", "ArgMin",
    "Sign", "Floor", "Ceil", "Round", "Hardmax",
    "RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike", "Multinomial", "Bernoulli",
    "BitShift", "BitwiseAnd", "BitwiseOr", "BitwiseXor", "BitwiseNot",
    "SequenceLength", "SequenceEmpty",
})


def supported_ops() -> list[str]:
    """The op types that have a gradient rule (sorted)."""
    return sorted(RULES)
