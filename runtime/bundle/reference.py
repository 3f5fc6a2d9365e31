"""A bundle trained by nothing but the manifest, numpy, safetensors and a plain ONNX Runtime
session: the loop any binding writes (the README shows it), kept here runnable so the tests hold
it to ``onnxforge train --backend onnx``'s weights. It imports nothing else from onnxforge.

    python -m onnxforge.runtime.bundle.reference BUNDLE_DIR   # prints the final loss
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
from safetensors.numpy import load_file

__all__ = ["train_bundle"]


def _lr(s: dict, step: int) -> float:
    base, warm, total = s["base_lr"], s["warmup_steps"], s["total_steps"]
    if warm > 0 and step < warm:
        return base * (step + 1) / warm
    p = min(max(step - warm, 0) / max(total - warm, 1), 1.0)
    return {"constant": base, "linear": base * (1 - p), "cosine": base * 0.5 * (1 + math.cos(math.pi * p))}[s["kind"]]


def train_bundle(folder) -> tuple[dict, list]:
    """Train the bundle in ``folder`` as its manifest says; returns ``(weights by name, losses)``."""
    d = Path(folder)
    m = json.loads((d / "manifest.json").read_text())
    step, cfg, b = m["step"], m["training"], m["batch"]["size"]
    session = ort.InferenceSession(str(d / step["file"]), providers=["CPUExecutionProvider"])
    named = {**load_file(d / m["parameters"]["file"]), **load_file(d / m["optimizer"]["file"])}
    state = {e["input"]: (np.concatenate([named[x["name"]].ravel() for x in e["members"]]).astype(np.float64)
                          / e["scale"]).astype(np.float32).reshape(e["shape"]) for e in step["state"]}
    data = load_file(d / m["data"]["train"]["file"])
    n, sc = m["data"]["train"]["examples"], step["scalars"]
    stop = n - n % b if m["batch"]["drop_last"] else n
    t, losses, (b1, b2), eps = 0, [], m["adamw"]["betas"], m["adamw"]["eps"]
    for epoch in range(1, cfg["epochs"] + 1):
        order = data["order"][epoch - 1] if "order" in data else np.arange(n)
        for start in range(0, stop, b):
            rows = order[start:min(start + b, stop)]
            lr, t = _lr(m["schedule"], t), t + 1
            feeds = {name: data[f"input/{name}"][rows] for name in step["feeds"]}
            feeds[step["target"]] = data["target"][rows]
            feeds[sc["lr"]], feeds[sc["step"]] = np.array(lr, np.float32), np.array(t, np.float32)
            if sc["seed"]:
                feeds[sc["seed"]] = np.array((cfg["seed"] * 100003 + epoch) % 2147483647, np.int64)
            if sc["adamw"]:
                k1 = (1 - b1 ** t) * math.sqrt(1 - b2) / (lr * math.sqrt(1 - b2 ** t) * (1 - b1))
                k2, decay = k1 * eps / math.sqrt(1 - b2), 1 - lr * m["adamw"]["weight_decay"]
                feeds.update({k: np.array(v, np.float32) for k, v in zip(sc["adamw"], (k1, k2, decay))})
            out = dict(zip([o.name for o in session.get_outputs()], session.run(None, {**feeds, **state})))
            state = {e["input"]: out[e["output"]] for e in step["state"]}
            losses.append(float(out[step["loss"]]))
    weights = dict(named)
    for e in step["state"]:
        flat = (state[e["input"]].astype(np.float64).ravel() * e["scale"]).astype(np.float32)
        for x in e["members"]:
            weights[x["name"]] = flat[x["offset"]:x["offset"] + x["size"]].reshape(x["shape"])
    return {k: weights[k] for k in load_file(d / m["parameters"]["file"])}, losses


if __name__ == "__main__":
    print(train_bundle(sys.argv[1])[1][-1])
