"""The registry: every op with a rule, and the ops known to carry no gradient."""

from __future__ import annotations

from onnxforge.runtime.autodiff.ops import (
    op_abs, op_add, op_average_pool, op_batch_normalization, op_cast, op_clip, op_concat, op_conv,
    op_conv_transpose, op_div, op_dropout, op_erf, op_exp, op_expand, op_flatten, op_gather, op_gather_elements, op_gemm,
    op_global_average_pool, op_gru, op_identity, op_layer_normalization, op_leaky_relu, op_log, op_log_softmax,
    op_lstm, op_matmul, op_max, op_max_pool, op_min, op_mul, op_neg, op_pad, op_pow, op_reciprocal,
    op_reduce_mean, op_reduce_sum, op_relu, op_reshape, op_resize, op_sigmoid, op_slice, op_softmax, op_softplus,
    op_split, op_split_to_sequence, op_sequence_at, op_sequence_construct, op_sequence_erase,
    op_sequence_insert, op_concat_from_sequence, op_sqrt, op_squeeze, op_sub, op_sum, op_tanh, op_transpose, op_unsqueeze, op_where,
)

__all__ = ["RULES", "NON_DIFFERENTIABLE", "supported_ops"]

_MODULES = [
    op_abs, op_add, op_average_pool, op_batch_normalization, op_cast, op_clip, op_concat, op_conv,
    op_conv_transpose, op_div, op_dropout, op_erf, op_exp, op_expand, op_flatten, op_gather, op_gather_elements, op_gemm,
    op_global_average_pool, op_gru, op_identity, op_layer_normalization, op_leaky_relu, op_log, op_log_softmax,
    op_lstm, op_matmul, op_max, op_max_pool, op_min, op_mul, op_neg, op_pad, op_pow, op_reciprocal,
    op_reduce_mean, op_reduce_sum, op_relu, op_reshape, op_resize, op_sigmoid, op_slice, op_softmax, op_softplus,
    op_split, op_split_to_sequence, op_sequence_at, op_sequence_construct, op_sequence_erase,
    op_sequence_insert, op_concat_from_sequence, op_sqrt, op_squeeze, op_sub, op_sum, op_tanh, op_transpose, op_unsqueeze, op_where,
]

RULES = {m.OP_TYPE: m for m in _MODULES}

# Ops whose outputs carry no gradient: integer/boolean results, shapes, comparisons, random draws,
# and piecewise-constant functions (their derivative is zero where it exists, as in PyTorch).
NON_DIFFERENTIABLE = frozenset({
    "Constant", "ConstantOfShape", "Shape", "Size", "Range", "EyeLike", "OneHot", "NonZero",
    "Equal", "Greater", "GreaterOrEqual", "Less", "LessOrEqual", "Not", "And", "Or", "Xor",
    "IsNaN", "IsInf", "ArgMax", "ArgMin",
    "Sign", "Floor", "Ceil", "Round",
    "RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike", "Multinomial", "Bernoulli",
    "BitShift", "BitwiseAnd", "BitwiseOr", "BitwiseXor", "BitwiseNot",
    "SequenceLength", "SequenceEmpty",
})


def supported_ops() -> list[str]:
    """The op types that have a gradient rule (sorted)."""
    return sorted(RULES)
