"""Optimizer updates as standard ONNX: plain SGD and AdamW with the artifacts backend's formula.

AdamW is what ``onnxblock.optim.AdamW(betas=(0.9, 0.999), eps=1e-8, weight_decay)`` builds for the
artifacts backend: ONNX Runtime training's ``AdamWOptimizer`` with ``adam_mode=1`` (Hugging Face's
AdamW: bias correction folded into the rate, eps outside the correction, weight decay after the
update; read from its kernel, and the tests compare both backends)::

    m <- b1 * m + (1 - b1) * g            v <- b2 * v + (1 - b2) * g^2
    p <- p - lr * sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps)
    p <- p * (1 - lr * wd)

with ``t`` the 1-based step (the ``STEP`` input) and ``lr`` the ``LR`` input. It differs from
PyTorch's ``AdamW`` (eps scaled by the correction, decay before the update) by about 1e-3 of a
weight after ten steps. The moments are carried scaled, ``M = m / (1 - b1)`` and
``V = v / (1 - b2)`` (:data:`MOMENT_SCALES`; ``state()`` and checkpoints hold ``m`` and ``v``), so
``M <- b1 M + g`` and ``V <- b2 V + g^2`` take no scaling pass; the step's scalars are computed
once per step by the runner (:func:`adamw_scalars`, inputs :data:`ADAMW_SCALARS`), and per
element the update is ``(p - M / (sqrt(V) k1 + k2)) * (1 - lr wd)`` with
``k1 = (1 - b1^t) sqrt(1 - b2) / (lr sqrt(1 - b2^t) (1 - b1))`` and ``k2 = eps k1 / sqrt(1 - b2)``:
11 elementwise passes (over one flat vector when the parameters are packed, see :mod:`.pack`).
That is the floor with standard ops: any scale folded into the loss's gradient cancels in
``M / sqrt(V)``, so ``1/k1`` and the decay stay two multiplies. On the 64-128-10 MLP (9,610
values, one thread) the passes are bound by L2 traffic: about 23 us a step (Div and Sqrt 3.5 us
each, a binary Mul/Add 2.2, a scalar one 1.4) against about 4 us for onnxruntime-training's fused
AdamW kernel, so that row's step runs 0.88-0.90x the artifacts backend's (SGD: 1.04-1.07x).
SGD: ``p <- p - lr * g``; with ``scaled`` gradients (the training step folds ``lr`` into the
loss's gradient, see :mod:`.loss`) ``p <- p - g``, one elementwise pass per parameter instead of two.
"""

from __future__ import annotations

import math

import numpy as np

from onnxforge.runtime.training.stepgraph._rewrite import Nodes
from onnxforge.runtime.training.stepgraph.forward import LR, NEW

__all__ = ["OPTIMIZERS", "BETAS", "EPS", "MOMENT_SCALES", "ADAMW_SCALARS", "adamw_floats", "adamw_scalars", "moment_names",
           "add_updates"]

OPTIMIZERS = ("adamw", "sgd")
BETAS = (0.9, 0.999)
EPS = 1e-8
MOMENT_SCALES = (1.0 - BETAS[0], 1.0 - BETAS[1])  # named moment = scale * carried input (m, v)
# float scalar inputs of an AdamW step (k1, k2, 1 - lr wd), see adamw_scalars: computed by the
# runner once per step instead of by eleven scalar nodes per step in the graph
ADAMW_SCALARS = ("stepgraph.adamw.k1", "stepgraph.adamw.k2", "stepgraph.adamw.decay")
_SQRT_1_B2 = math.sqrt(1.0 - BETAS[1])
_EPS_K2 = EPS / _SQRT_1_B2


def moment_names(optimizer: str, param: str) -> list[str]:
    """The optimizer-state inputs of ``param`` (their outputs are ``NEW`` + each)."""
    return [f"adamw.m/{param}", f"adamw.v/{param}"] if optimizer == "adamw" else []


def adamw_floats(lr: float, step: int, weight_decay: float) -> tuple[float, float, float]:
    """The values of :data:`ADAMW_SCALARS` for step ``step`` (1-based) at rate ``lr``, in double
    precision (``k1``, ``k2`` of the module docstring and ``1 - lr wd``); a rate of 0 gives an
    infinite ``k1``, so nothing moves. Plain floats: the runner writes them into its host array."""
    b1, b2 = BETAS
    den = lr * math.sqrt(1.0 - b2 ** step) * (1.0 - b1)
    k1 = (1.0 - b1 ** step) * _SQRT_1_B2 / den if den else math.inf
    return k1, k1 * _EPS_K2, 1.0 - lr * weight_decay


def adamw_scalars(lr: float, step: int, weight_decay: float) -> dict:
    """The :data:`ADAMW_SCALARS` inputs of step ``step`` (1-based) at rate ``lr`` (see :func:`adamw_floats`)."""
    return {name: np.array(v, np.float32) for name, v in zip(ADAMW_SCALARS, adamw_floats(lr, step, weight_decay))}


def add_updates(n: Nodes, optimizer: str, grads: dict, weight_decay: float = 0.0, scaled: bool = False) -> list[str]:
    """Nodes (into ``n``) computing ``NEW + name`` for every parameter in ``grads`` (param -> gradient
    name) and for its optimizer state (the scaled moments). ``scaled``: the gradients already carry
    the learning rate (SGD only). Returns the output names in order."""
    outs = []
    if scaled and optimizer != "sgd":
        raise ValueError(f"only SGD takes gradients scaled by the learning rate; got {optimizer!r}")
    if optimizer == "sgd":
        for p, g in grads.items():
            outs.append(n.op("Sub", [p, g if scaled else n.op("Mul", [g, LR])], out=NEW + p))
        return outs
    k1, k2, decay_input = ADAMW_SCALARS
    decay = decay_input if weight_decay else None
    c_b1, c_b2 = n.const(BETAS[0], np.float32), n.const(BETAS[1], np.float32)
    for p, g in grads.items():
        m, v = moment_names(optimizer, p)
        m2 = n.op("Add", [n.op("Mul", [m, c_b1]), g], out=NEW + m)
        v2 = n.op("Add", [n.op("Mul", [v, c_b2]), n.op("Mul", [g, g])], out=NEW + v)
        denom = n.op("Add", [n.op("Mul", [n.op("Sqrt", [v2]), k1]), k2])
        stepped = n.op("Sub", [p, n.op("Div", [m2, denom])], out=None if decay else NEW + p)
        outs += [n.op("Mul", [stepped, decay], out=NEW + p) if decay else stepped, m2, v2]
    return outs
