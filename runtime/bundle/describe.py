"""The manifest's description of a step model: which inputs carry what, and how a runtime computes
the per-step values (the schedule, AdamW's scalars, the step count, the dropout seed).

Everything a loop written against any ONNX Runtime binding needs is data here, so the JavaScript
library (``js/onnxforge-train.mjs``), the README's Python loop and any other binding read the same
recipe; :mod:`onnxforge.runtime.training` is the reference they reproduce.
"""

from __future__ import annotations

import numpy as np
from onnx import ModelProto, TensorProto

from onnxforge.runtime.training.stepgraph import BETAS, EPS, LR, SEED, STEP, StepGraph
from onnxforge.runtime.training.stepgraph.loss import LOSS

__all__ = ["describe_step", "describe_eval", "recipes", "tensor_info", "DTYPES"]

DTYPES = {TensorProto.FLOAT: "float32", TensorProto.INT64: "int64", TensorProto.INT32: "int32",
          TensorProto.BOOL: "bool", TensorProto.DOUBLE: "float64"}


def tensor_info(vi) -> dict:
    """``{name, dtype, shape}`` of a value info (a dynamic dim is its name, or null)."""
    t = vi.type.tensor_type
    shape = [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in t.shape.dim]
    return {"name": vi.name, "dtype": DTYPES.get(t.elem_type, str(t.elem_type)), "shape": shape}


def _io(model: ModelProto) -> tuple[dict, dict]:
    return ({i.name: tensor_info(i) for i in model.graph.input}, {o.name: tensor_info(o) for o in model.graph.output})


def describe_step(graph: StepGraph, file: str) -> dict:
    """A step model's entry: its feeds, target, scalars and carried state (packed buffers with
    their members' offsets, shapes and the scale the input is kept at)."""
    inputs, outputs = _io(graph.model)
    state = []
    for name, new in zip(graph.state, graph.updates):
        entry = {"input": name, "output": new, "dtype": inputs[name]["dtype"], "shape": inputs[name]["shape"],
                 "scale": float(graph.packing.scales.get(name, 1.0)), "members": []}
        layout = graph.packing.packs.get(name)
        offset = 0
        for member, shape in (layout or [(name, tuple(inputs[name]["shape"]))]):
            size = int(np.prod(shape, dtype=np.int64))
            entry["members"].append({"name": member, "shape": [int(d) for d in shape], "offset": offset, "size": size})
            offset += size
        state.append(entry)
    return {"file": file, "inputs": list(inputs.values()), "outputs": list(outputs.values()),
            "feeds": list(graph.feeds), "target": graph.target, "loss": LOSS,
            "scalars": {"lr": LR, "step": STEP, "seed": SEED if graph.seeded else None,
                        "adamw": list(graph.scalars)},
            "state": state}


def describe_eval(graph: StepGraph, file: str) -> dict:
    inputs, outputs = _io(graph.model)
    return {"file": file, "inputs": list(inputs.values()), "outputs": list(outputs.values()),
            "feeds": list(graph.feeds), "target": graph.target, "loss": LOSS, "output": graph.output,
            "state": list(graph.state)}


def recipes(config, steps_per_epoch: int) -> dict:
    """How a loop computes each step's scalar inputs (formulas as the Python reference runs them)."""
    b1, b2 = BETAS
    return {
        "schedule": {"kind": config.schedule, "base_lr": config.lr, "warmup_steps": config.warmup_steps,
                     "total_steps": steps_per_epoch * config.epochs, "step_base": 0,
                     "formula": "s = 0-based step, T = total_steps, W = warmup_steps; if W > 0 and s < W: "
                                "lr = base * (s + 1) / W; else p = min(max(s - W, 0) / max(T - W, 1), 1); "
                                "constant: base; linear: base * (1 - p); cosine: base * 0.5 * (1 + cos(pi * p))",
                     "precision": "double, then rounded to float32 for the lr input"},
        "step_count": {"input": STEP, "dtype": "float32", "first": 1,
                       "note": "the 1-based optimizer step: steps already taken + 1 (also after a checkpoint)"},
        "adamw": {"betas": [b1, b2], "eps": EPS, "weight_decay": config.weight_decay if config.optimizer == "adamw" else 0.0,
                  "scalars": {"stepgraph.adamw.k1": "(1 - b1^t) * sqrt(1 - b2) / (lr * sqrt(1 - b2^t) * (1 - b1))",
                              "stepgraph.adamw.k2": "k1 * eps / sqrt(1 - b2)",
                              "stepgraph.adamw.decay": "1 - lr * weight_decay"},
                  "t": "the 1-based step count", "precision": "double, then rounded to float32",
                  "moments": "carried scaled: input adamw.m/P = m / (1 - b1), adamw.v/P = v / (1 - b2); "
                             "the manifest's state scale is the factor back to m and v"},
        "dropout_seed": {"input": SEED, "dtype": "int64", "formula": "(seed * 100003 + epoch) mod 2147483647",
                         "epoch_base": 1, "note": "set once per epoch; the masks are a hash of (seed input, step, element)"},
    }
