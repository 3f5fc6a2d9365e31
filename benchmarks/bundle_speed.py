"""Training speed of a bundle in the browser tab (onnxruntime-web, WASM, one thread, headless
Chromium) beside Python's onnx backend (``onnxforge train --backend onnx``, one thread) and Node.js
(onnxruntime-node, one thread) on the same bundle, alternating in rounds (see README, "Training in
a browser tab or Node.js").

    python benchmarks/bundle_speed.py [--rounds 3] [--epochs 20] [--json]

Needs what the bundle tests need (npm ci in runtime/bundle/js; Debian's chromium). Steps/s are the
median over rounds of each run's training epochs (validation excluded), the first epoch dropped.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path


from onnxforge.graphs import convnet, mlp
from onnxforge.runtime import Trainer
from onnxforge.runtime.bundle import BundleOptions, build_bundle
from onnxforge.runtime.bundle.build import JS_DIR
from onnxforge.samples import load_digits

MODELS = {"mlp 64-128-10, SGD": (lambda: mlp(64, [128], 10, seed=0), "flat", "sgd", 0.1),
          "convnet 16-32, AdamW": (lambda: convnet((1, 8, 8), channels=(16, 32), kernel=3, pool=2, classes=10, seed=0),
                                   "images", "adamw", 0.003)}


def _rate(history: list) -> float:
    return statistics.median(r["steps_per_s"] for r in history[1:])


def _node(*args) -> dict:
    run = subprocess.run(["node", *map(str, args)], capture_output=True, text=True, check=True,
                         env={**os.environ, "ONNXFORGE_NODE_MODULES": str(JS_DIR / "node_modules")})
    return json.loads(run.stdout)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--json", action="store_true")
    a = p.parse_args(argv)
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, (build, view, optimizer, lr) in MODELS.items():
            model, train = build(), load_digits(view)[0]
            o = BundleOptions(epochs=a.epochs, batch_size=32, lr=lr, optimizer=optimizer, shuffle=False)
            bundle = Path(tmp) / name.split()[0]
            build_bundle(model, bundle, o, data=train, web=True, web_backends=("wasm",))
            rates = {"page (wasm, 1 thread)": [], "node (onnxruntime-node, 1 thread)": [], "python onnx backend (1 thread)": []}
            for r in range(a.rounds):
                rates["page (wasm, 1 thread)"].append(_rate(_node(JS_DIR / "run-page.mjs", bundle)["history"]))
                rates["node (onnxruntime-node, 1 thread)"].append(_rate(_node(bundle / "train.mjs", "--quiet")["history"]))
                t = Trainer(model, Path(tmp) / f"run{r}", backend="onnx", device="cpu", threads=1, progress=False,
                            optimizer=optimizer, lr=lr)
                rates["python onnx backend (1 thread)"].append(_rate(t.fit(train, epochs=a.epochs, batch_size=32,
                                                                           shuffle=False, overwrite=True)))
            out[name] = {k: round(statistics.median(v)) for k, v in rates.items()}
    out["load_average"] = os.getloadavg()[0]
    if a.json:
        print(json.dumps(out))
    else:
        for name, rates in out.items():
            print(name, rates)
    return out


if __name__ == "__main__":
    sys.exit(main() and 0)
