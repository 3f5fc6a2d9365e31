"""Which weights get low-rank adapters, and the adapters' names, shapes and starting values.

A **target** is a 2-D float initialiser ``W`` that a ``MatMul`` multiplies by (its second input) or a
``Gemm`` uses as its ``B``, directly or through a ``Transpose`` (how the TorchScript exporter writes
``nn.Linear`` without constant folding). Each node multiplies its input by ``M``, ``[K, N]``: ``W``
itself, or ``W`` transposed when ``W`` is stored ``[N, K]`` (PyTorch's ``[out, in]``). The adapter is

    W.lora_A  [K, rank]   starts ~ N(0, 1/rank) from the run's seed
    W.lora_B  [rank, N]   starts at zero

and the node's product becomes ``x @ M + scale * (x @ A) @ B`` with ``scale = alpha / rank``.
Merged back: ``M + scale * A @ B`` in ``W``'s own layout (transposed back when ``W`` is ``[N, K]``).

A weight that anything other than such a node reads (an embedding table tied to the output layer)
is not a target by default: changing it would change those readers too; a pattern naming it is
refused.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field

import numpy as np
from onnx import ModelProto, TensorProto

from onnxforge.runtime.errors import ConfigError

__all__ = ["LoRA", "Target", "Use", "find_targets", "adapter_names", "initial_adapters", "LORA_A", "LORA_B"]

LORA_A = ".lora_A"
LORA_B = ".lora_B"
_FLOATS = (TensorProto.FLOAT,)  # adapters are float32, as training is


@dataclass(frozen=True)
class LoRA:
    """Low-rank adaptation settings: ``rank`` r, ``alpha`` (default: ``rank``, so scale 1) and
    ``targets``: a glob (or several) over initialiser names; ``None`` takes every eligible weight."""

    rank: int
    alpha: float | None = None
    targets: str | tuple | list | None = None

    def __post_init__(self):
        if isinstance(self.rank, bool) or not isinstance(self.rank, int) or self.rank < 1:
            raise ConfigError(f"LoRA rank must be a positive integer; got {self.rank!r}")
        if self.alpha is not None and (isinstance(self.alpha, bool) or not isinstance(self.alpha, (int, float))
                                       or not np.isfinite(self.alpha) or self.alpha <= 0):
            raise ConfigError(f"LoRA alpha must be a positive number; got {self.alpha!r}")
        patterns = self.targets
        if isinstance(patterns, str):
            patterns = (patterns,)
        if patterns is not None:
            patterns = tuple(patterns)
            if not patterns or not all(isinstance(p, str) and p for p in patterns):
                raise ConfigError(f"LoRA targets must be glob patterns (strings); got {self.targets!r}")
        object.__setattr__(self, "targets", patterns)

    @property
    def scale(self) -> float:
        return float(self.alpha if self.alpha is not None else self.rank) / self.rank

    def record(self) -> dict:
        """What a run folder records (and a resume compares)."""
        return {"rank": self.rank, "alpha": float(self.alpha if self.alpha is not None else self.rank),
                "targets": list(self.targets) if self.targets else None}

    @classmethod
    def of(cls, value) -> "LoRA | None":
        """A :class:`LoRA` from itself, a rank, or a recorded dict; ``None`` stays ``None``."""
        if value is None or isinstance(value, cls):
            return value
        if isinstance(value, dict):
            return cls(int(value["rank"]), value.get("alpha"), value.get("targets"))
        return cls(value)


@dataclass(frozen=True)
class Use:
    """One node that multiplies by the target: its index, and Gemm's ``alpha`` (1 for MatMul)."""

    node: int
    gain: float = 1.0


@dataclass
class Target:
    weight: str
    transposed: bool          # W is stored [N, K]: the nodes multiply by W^T
    k: int
    n: int
    uses: list = field(default_factory=list)

    def delta_in_layout(self, delta_kn: np.ndarray) -> np.ndarray:
        """``delta_kn`` ([K, N]) in the weight's stored layout."""
        return delta_kn.T if self.transposed else delta_kn


def _attr(node, name: str, default):
    for a in node.attribute:
        if a.name == name:
            return a.f if a.type == a.FLOAT else a.i
    return default


def _candidates(model: ModelProto) -> tuple[dict, dict, set]:
    """(weight -> Target, weight -> why it is not eligible, every float 2-D initialiser)."""
    graph = model.graph
    weights = {t.name: t for t in graph.initializer if t.data_type in _FLOATS and len(t.dims) == 2}
    transposes = {}  # output -> weight, for 2-D Transposes of a weight
    for node in graph.node:
        if node.op_type == "Transpose" and node.domain in ("", "ai.onnx") and node.input[0] in weights:
            perm = [a.ints for a in node.attribute if a.name == "perm"]
            if not perm or list(perm[0]) == [1, 0]:
                transposes[node.output[0]] = node.input[0]
    found: dict[str, Target] = {}
    refused: dict[str, str] = {}
    for k, node in enumerate(graph.node):
        if node.domain not in ("", "ai.onnx") or node.op_type not in ("MatMul", "Gemm") or len(node.input) < 2:
            continue
        name = node.input[1]
        through = name in transposes
        weight = transposes.get(name, name)
        if weight not in weights:
            continue
        if node.op_type == "Gemm" and _attr(node, "transA", 0):
            refused[weight] = "a Gemm with transA=1 reads it"
            continue
        transposed = through != bool(node.op_type == "Gemm" and _attr(node, "transB", 0))
        rows, cols = (int(d) for d in weights[weight].dims)
        k_, n_ = (cols, rows) if transposed else (rows, cols)
        t = found.setdefault(weight, Target(weight, transposed, k_, n_))
        if t.transposed != transposed:
            refused[weight] = "nodes read it in both layouts"
        gain = float(_attr(node, "alpha", 1.0)) if node.op_type == "Gemm" else 1.0
        t.uses.append(Use(k, gain))
    # a weight (or its Transpose) read by anything else is not eligible
    for node in graph.node:
        is_target = node.op_type in ("MatMul", "Gemm") and node.domain in ("", "ai.onnx")
        for pos, name in enumerate(node.input):
            weight = transposes.get(name, name)
            if weight not in found:
                continue
            if node.op_type == "Transpose" and name == weight and node.output[0] in transposes:
                continue
            if not (is_target and pos == 1):
                refused.setdefault(weight, f"a {node.op_type} node reads it too")
    for name in [n for n in graph.output if n.name in weights or n.name in transposes]:
        refused.setdefault(transposes.get(name.name, name.name), "it is a graph output")
    return found, refused, set(weights)


def find_targets(model: ModelProto, patterns=None) -> list[Target]:
    """The targets of ``model`` (every eligible weight, or those matching ``patterns``), in
    initialiser order; a pattern that matches nothing eligible is a :class:`ConfigError`."""
    found, refused, _ = _candidates(model)
    order = [t.name for t in model.graph.initializer]
    eligible = [n for n in order if n in found and n not in refused]
    if not patterns:
        if not eligible:
            raise ConfigError("LoRA found no weight to adapt: no 2-D float initialiser is the weight of a MatMul or "
                              "Gemm node" + (f" that nothing else reads ({_why(refused)})" if refused else ""))
        return [found[n] for n in eligible]
    chosen = []
    for pattern in patterns:
        hits = [n for n in order if fnmatch.fnmatchcase(n, pattern)]
        bad = [n for n in hits if n in refused or n not in found]
        if bad:
            reason = refused.get(bad[0], "it is not a 2-D float32 weight that a MatMul or Gemm multiplies by")
            raise ConfigError(f"LoRA target {bad[0]!r} (pattern {pattern!r}) cannot be adapted: {reason}")
        if not hits:
            shown = ", ".join(eligible[:12]) + (" ..." if len(eligible) > 12 else "")
            raise ConfigError(f"LoRA targets pattern {pattern!r} matches no weight; the weights that can be adapted "
                              f"are: {shown or 'none'}")
        chosen += [n for n in hits if n not in chosen]
    return [found[n] for n in order if n in chosen]


def _why(refused: dict) -> str:
    name, reason = next(iter(refused.items()))
    return f"{name}: {reason}"


def adapter_names(weight: str) -> tuple[str, str]:
    return weight + LORA_A, weight + LORA_B


def initial_adapters(targets: list[Target], rank: int, seed: int) -> dict[str, np.ndarray]:
    """``{W.lora_A: N(0, 1/rank) [K, rank], W.lora_B: zeros [rank, N]}``, drawn in target order
    from ``numpy.random.default_rng(seed)`` (float32)."""
    rng = np.random.default_rng(seed)
    values = {}
    for t in targets:
        a, b = adapter_names(t.weight)
        values[a] = (rng.standard_normal((t.k, rank)) / np.sqrt(rank)).astype(np.float32)
        values[b] = np.zeros((rank, t.n), np.float32)
    return values
