"""The built-in plugin pack: activations defined as ONNX functions (they run everywhere and train),
and LogGamma, a Python kernel for a function no ONNX decomposition expresses (inference only).

Every body uses only ops that ONNX Runtime training 1.19 can differentiate. Softplus has no
gradient builder there, so Softplus, Mish and friends are written with Relu, Abs, Exp and Log in
the overflow-free form ``softplus(x) = relu(x) + log(1 + exp(-|x|))``; ELU avoids ``Where`` (whose
unselected branch would overflow ``exp`` and poison the gradient with ``0 * inf``).
"""

from __future__ import annotations

import math

import numpy as np
from onnx import AttributeProto, helper

from onnxforge.plugins._declaration import Op, Plugin

__all__ = ["DOMAIN", "PLUGIN"]

DOMAIN = "onnxforge"


def _const(name: str, value: float):
    return helper.make_node("Constant", [], [name], value_float=float(value))


def _const_ref(name: str, attribute: str):
    node = helper.make_node("Constant", [], [name])
    ref = AttributeProto()
    ref.name, ref.ref_attr_name, ref.type = "value_float", attribute, AttributeProto.FLOAT
    node.attribute.append(ref)
    return node


def _softplus_nodes(x: str, out: str, p: str) -> list:
    """``out = relu(x) + log(1 + exp(-|x|))`` with intermediate names prefixed ``p``."""
    n = helper.make_node
    return [
        n("Abs", [x], [f"{p}abs"]),
        n("Neg", [f"{p}abs"], [f"{p}neg"]),
        n("Exp", [f"{p}neg"], [f"{p}exp"]),
        _const(f"{p}one", 1.0),
        n("Add", [f"{p}exp", f"{p}one"], [f"{p}sum"]),
        n("Log", [f"{p}sum"], [f"{p}log"]),
        n("Relu", [x], [f"{p}relu"]),
        n("Add", [f"{p}relu", f"{p}log"], [out]),
    ]


SWISH = Op(
    DOMAIN, "Swish", ["X"], ["Y"],
    body=[helper.make_node("Sigmoid", ["X"], ["sig"]), helper.make_node("Mul", ["X", "sig"], ["Y"])],
    doc="Swish (SiLU): Y = X * sigmoid(X).",
)

GELU = Op(
    DOMAIN, "Gelu", ["X"], ["Y"],
    body=[
        _const("inv_sqrt2", 1.0 / math.sqrt(2.0)),
        helper.make_node("Mul", ["X", "inv_sqrt2"], ["scaled"]),
        helper.make_node("Erf", ["scaled"], ["erf"]),
        _const("one", 1.0),
        helper.make_node("Add", ["erf", "one"], ["cdf2"]),
        _const("half", 0.5),
        helper.make_node("Mul", ["X", "half"], ["half_x"]),
        helper.make_node("Mul", ["half_x", "cdf2"], ["Y"]),
    ],
    doc="GELU, exact (erf) form: Y = X * 0.5 * (1 + erf(X / sqrt(2))).",
)

SOFTPLUS = Op(
    DOMAIN, "Softplus", ["X"], ["Y"],
    body=_softplus_nodes("X", "Y", "sp_"),
    doc="Softplus: Y = log(1 + exp(X)), computed as relu(X) + log(1 + exp(-|X|)) so it never overflows.",
)

MISH = Op(
    DOMAIN, "Mish", ["X"], ["Y"],
    body=_softplus_nodes("X", "softplus", "sp_") + [
        helper.make_node("Tanh", ["softplus"], ["t"]),
        helper.make_node("Mul", ["X", "t"], ["Y"]),
    ],
    doc="Mish: Y = X * tanh(softplus(X)).",
)

ELU = Op(
    DOMAIN, "Elu", ["X"], ["Y"], attributes={"alpha": 1.0},
    body=[
        helper.make_node("Relu", ["X"], ["pos"]),
        _const("zero", 0.0),
        helper.make_node("Min", ["X", "zero"], ["neg_part"]),
        helper.make_node("Exp", ["neg_part"], ["e"]),
        _const("one", 1.0),
        helper.make_node("Sub", ["e", "one"], ["em1"]),
        _const_ref("alpha_c", "alpha"),
        helper.make_node("Mul", ["em1", "alpha_c"], ["scaled"]),
        helper.make_node("Add", ["pos", "scaled"], ["Y"]),
    ],
    doc="ELU: Y = X for X > 0, alpha * (exp(X) - 1) otherwise (trainable, unlike ONNX's own Elu in ORT 1.19).",
)


def _lgamma_scalar(v: float) -> float:
    if v <= 0 and float(v).is_integer():
        return math.inf  # the poles of the gamma function
    return math.lgamma(v)


_LGAMMA = np.frompyfunc(_lgamma_scalar, 1, 1)


def log_gamma(x: np.ndarray) -> np.ndarray:
    """log |Gamma(x)| elementwise (``torch.lgamma``); +inf at 0, -1, -2, ..."""
    x = np.asarray(x)
    return np.asarray(_LGAMMA(x.astype(np.float64)), dtype=np.float64).astype(np.float32).reshape(x.shape)


LOG_GAMMA = Op(
    DOMAIN, "LogGamma", ["X"], ["Y"], kernel=log_gamma,
    doc="log |Gamma(X)| elementwise (no ONNX op computes it); a Python kernel, inference only.",
)

PLUGIN = Plugin(
    "builtin",
    [SWISH, GELU, MISH, SOFTPLUS, ELU, LOG_GAMMA],
    version="1",
    description="onnxforge's own ops: Swish, Gelu, Mish, Softplus, Elu (functions) and LogGamma (Python kernel)",
)
