"""Elementwise one-input ops as a table of one-liners (tinygrad's gradient.py, JAX's lax.py):
each row maps the op to dX as an expression of X, Y (the op's output), dY and the node's
attributes, written with the small algebra ``E`` below. PyTorch's conventions at kinks: the
derivative of the branch that holds for the strict inequality, as its backward functions do."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
from onnx import TensorProto

from onnxforge.runtime.autodiff.ops._common import attr

__all__ = ["TABLE"]


class E:
    """Values written through the emitter with operators: ``E(ctx, name) * 2 + x``."""

    def __init__(self, ctx, name):
        self.ctx, self.name = ctx, name

    def _v(self, other):
        return other.name if isinstance(other, E) else self.ctx.scalar(float(other), self.name)

    def _op(self, op, *args):
        return E(self.ctx, self.ctx.op(op, [self.name] + [self._v(a) for a in args]))

    def __add__(self, o): return self._op("Add", o)
    __radd__ = __add__
    def __sub__(self, o): return self._op("Sub", o)
    def __rsub__(self, o): return E(self.ctx, self.ctx.op("Sub", [self._v(o), self.name]))
    def __mul__(self, o): return self._op("Mul", o)
    __rmul__ = __mul__
    def __truediv__(self, o): return self._op("Div", o)
    def __rtruediv__(self, o): return E(self.ctx, self.ctx.op("Div", [self._v(o), self.name]))
    def __neg__(self): return self._op("Neg")
    def __gt__(self, o): return self._op("Greater", o)
    def __lt__(self, o): return self._op("Less", o)
    def f(self, op, **attrs): return E(self.ctx, self.ctx.op(op, [self.name], **attrs))  # noqa: E704


def where(c: E, a, b) -> E:
    """``a`` where ``c`` else ``b`` (numbers become scalars of ``a``'s or ``b``'s type)."""
    like = a if isinstance(a, E) else b
    return E(c.ctx, c.ctx.op("Where", [c.name, like._v(a), like._v(b)]))


def between(x: E, lo: float, hi: float) -> E:
    """``lo < x < hi`` (bool)."""
    return E(x.ctx, x.ctx.op("And", [(x > lo).name, (x < hi).name]))


def sq(x: E) -> E:
    return x * x


_SQRT_2_PI = math.sqrt(2.0 / math.pi)


def _gelu(x, y, g, n):
    if attr(n, "approximate", "none") == "tanh":
        t = (_SQRT_2_PI * (x + 0.044715 * x * sq(x))).f("Tanh")
        return g * (0.5 * (1 + t) + 0.5 * x * (1 - sq(t)) * _SQRT_2_PI * (1 + 3 * 0.044715 * sq(x)))
    cdf = 0.5 * (1 + (x * (1 / math.sqrt(2.0))).f("Erf"))
    pdf = (-0.5 * sq(x)).f("Exp") * (1 / math.sqrt(2 * math.pi))
    return g * (cdf + x * pdf)


def _mish(x, y, g, n):
    t = x.f("Softplus").f("Tanh")
    return g * (t + x * (1 - sq(t)) * x.f("Sigmoid"))


def _swish(x, y, g, n):
    a = attr(n, "alpha", 1.0)
    s = (x * a).f("Sigmoid")
    return g * (s + a * x * s * (1 - s))


def _hard_sigmoid(x, y, g, n):
    a, b = attr(n, "alpha", 0.2), attr(n, "beta", 0.5)
    z = x * a + b
    return where(between(z, 0.0, 1.0), g * a, 0.0)


# the largest float32 below 3: Shrink(X, lambd=_BELOW_3) keeps X where |X| >= 3 (float32/16 values)
_BELOW_3 = float(np.nextafter(np.float32(3.0), np.float32(0.0)))


def _hard_swish(x, y, g, n):
    """0 for X <= -3, X/3 + 1/2 strictly between, 1 for X >= 3 (PyTorch's hardswish_backward). In
    float32/16: HardSigmoid(X) + (X - Shrink(X, lambd just below 3)) / 6, six elementwise passes and
    no Where (ONNX Runtime's Where with a scalar branch is several times slower than a Mul; measured
    in docs/notes/training-speed.md: 1.24-1.41x). In float64, where that lambd is not the bound, the
    comparisons."""
    if x.ctx.elem(x.name) in (TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.BFLOAT16):
        inside = x - x.f("Shrink", lambd=_BELOW_3)
        return g * (x.f("HardSigmoid", alpha=1.0 / 6.0, beta=0.5) + inside * (1.0 / 6.0))
    return where(x > -3.0, where(x < 3.0, g * (x / 3.0 + 0.5), g), 0.0)


# op -> dX from (X, Y, dY, node), all but node as E
_DX = {
    "Sin": lambda x, y, g, n: g * x.f("Cos"),
    "Cos": lambda x, y, g, n: -(g * x.f("Sin")),
    "Tan": lambda x, y, g, n: g * (1 + sq(y)),
    "Asin": lambda x, y, g, n: g / (1 - sq(x)).f("Sqrt"),
    "Acos": lambda x, y, g, n: -(g / (1 - sq(x)).f("Sqrt")),
    "Atan": lambda x, y, g, n: g / (1 + sq(x)),
    "Sinh": lambda x, y, g, n: g * x.f("Cosh"),
    "Cosh": lambda x, y, g, n: g * x.f("Sinh"),
    "Asinh": lambda x, y, g, n: g / (sq(x) + 1).f("Sqrt"),
    "Acosh": lambda x, y, g, n: g / (sq(x) - 1).f("Sqrt"),
    "Atanh": lambda x, y, g, n: g / (1 - sq(x)),
    "Softsign": lambda x, y, g, n: g / sq(1 + x.f("Abs")),
    "Elu": lambda x, y, g, n: where(x > 0, g, g * (y + attr(n, "alpha", 1.0))),
    "Celu": lambda x, y, g, n: where(x > 0, g, g * (x / attr(n, "alpha", 1.0)).f("Exp")),
    "Selu": lambda x, y, g, n: where(x > 0, g * attr(n, "gamma", 1.05070102214813232421875),
                                     g * (y + attr(n, "alpha", 1.67326319217681884765625)
                                          * attr(n, "gamma", 1.05070102214813232421875))),
    "ThresholdedRelu": lambda x, y, g, n: where(x > attr(n, "alpha", 1.0), g, 0.0),
    "Shrink": lambda x, y, g, n: where(between(x, -attr(n, "lambd", 0.5), attr(n, "lambd", 0.5)), 0.0, g),
    "HardSigmoid": _hard_sigmoid,
    "HardSwish": _hard_swish,
    "Gelu": _gelu,
    "Mish": _mish,
    "Swish": _swish,
}


def _rule(op_type, dx):
    def vjp(ctx, node, dys, need):
        x, y = E(ctx, node.input[0]), E(ctx, node.output[0])
        return [ctx.like(dx(x, y, E(ctx, dys[0]), node).name, node.input[0])]
    vjp.__doc__ = f"dX of {op_type} (see the table in _unary)."
    return SimpleNamespace(OP_TYPE=op_type, vjp=vjp, __doc__=vjp.__doc__)


TABLE = {op: _rule(op, dx) for op, dx in _DX.items()}
