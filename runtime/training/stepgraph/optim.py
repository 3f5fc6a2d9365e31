"""Optimizer updates as standard ONNX: plain SGD and AdamW with the artifacts backend's formula.

AdamW is ONNX Runtime training's ``AdamWOptimizer`` in its default (PyTorch) mode, as
``onnxblock.optim.AdamW(betas=(0.9, 0.999), eps=1e-8, weight_decay)`` builds it::

    p <- p * (1 - lr * wd)
    m <- b1 * m + (1 - b1) * g            v <- b2 * v + (1 - b2) * g^2
    p <- p - lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)

with ``t`` the 1-based step (the ``STEP`` input) and ``lr`` the ``LR`` input. The step's scalars are
computed once per step; the per-element work is folded to ``p * (1 - lr wd) - m / (sqrt(v) k1 + k2)``
with ``k1 = (1 - b1^t) / (lr sqrt(1 - b2^t))`` and ``k2 = eps (1 - b1^t) / lr``: 13 elementwise
passes per parameter.
SGD: ``p <- p - lr * g``.
"""

from __future__ import annotations

import numpy as np

from onnxforge.runtime.training.stepgraph._rewrite import Nodes
from onnxforge.runtime.training.stepgraph.forward import LR, NEW, STEP

__all__ = ["OPTIMIZERS", "BETAS", "EPS", "moment_names", "add_updates"]

OPTIMIZERS = ("adamw", "sgd")
BETAS = (0.9, 0.999)
EPS = 1e-8


def moment_names(optimizer: str, param: str) -> list[str]:
    """The optimizer-state inputs of ``param`` (their outputs are ``NEW`` + each)."""
    return [f"adamw.m/{param}", f"adamw.v/{param}"] if optimizer == "adamw" else []


def _adamw_scalars(n: Nodes, weight_decay: float) -> tuple[str, str, str | None]:
    """``k1 = (1 - b1^t) / (lr sqrt(1 - b2^t))``, ``k2 = eps (1 - b1^t) / lr``, ``1 - lr wd``:
    then ``lr / bc1 * m / (sqrt(v) / sqrt(bc2) + eps) = m / (sqrt(v) k1 + k2)``."""
    b1, b2 = BETAS
    one = n.const(1.0, np.float32)
    bc1 = n.op("Sub", [one, n.op("Pow", [n.const(b1, np.float32), STEP])])
    bc2 = n.op("Sub", [one, n.op("Pow", [n.const(b2, np.float32), STEP])])
    per_lr = n.op("Div", [bc1, LR])
    k1 = n.op("Div", [per_lr, n.op("Sqrt", [bc2])])
    k2 = n.op("Mul", [per_lr, n.const(EPS, np.float32)])
    decay = n.op("Sub", [one, n.op("Mul", [LR, n.const(weight_decay, np.float32)])]) if weight_decay else None
    return k1, k2, decay


def add_updates(n: Nodes, optimizer: str, grads: dict, weight_decay: float = 0.0) -> list[str]:
    """Nodes (into ``n``) computing ``NEW + name`` for every parameter in ``grads`` (param -> gradient
    name) and for its optimizer state. Returns the output names in order."""
    outs = []
    if optimizer == "sgd":
        for p, g in grads.items():
            outs.append(n.op("Sub", [p, n.op("Mul", [g, LR])], out=NEW + p))
        return outs
    b1, b2 = BETAS
    k1, k2, decay = _adamw_scalars(n, weight_decay)
    c_b1, c_1b1 = n.const(b1, np.float32), n.const(1.0 - b1, np.float32)
    c_b2, c_1b2 = n.const(b2, np.float32), n.const(1.0 - b2, np.float32)
    for p, g in grads.items():
        m, v = moment_names(optimizer, p)
        m2 = n.op("Add", [n.op("Mul", [m, c_b1]), n.op("Mul", [g, c_1b1])], out=NEW + m)
        v2 = n.op("Add", [n.op("Mul", [v, c_b2]), n.op("Mul", [n.op("Mul", [g, g]), c_1b2])], out=NEW + v)
        denom = n.op("Add", [n.op("Mul", [n.op("Sqrt", [v2]), k1]), k2])
        kept = n.op("Mul", [p, decay]) if decay else p
        outs += [n.op("Sub", [kept, n.op("Div", [m2, denom])], out=NEW + p), m2, v2]
    return outs
