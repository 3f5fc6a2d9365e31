"""Peak memory of a LoRA run on a model whose weights (about 2.2 GB) live in ONNX external data.

Writes MODEL_DIR/big.onnx + big.onnx.data: ``LAYERS`` MatMul layers of ``WIDTH x WIDTH`` float32
(8 x 8192^2: 2.15 GB) with ReLUs and a 10-class Gemm head, each weight written straight into the
data file (never the whole model in memory, never one protobuf message). Then, in a fresh process,
``onnxforge train --lora 4`` for one epoch (256 examples, batch 32) with its run folder's exports:
``model.onnx`` + data (merged), ``model.lora.onnx`` + data, ``source.onnx`` + data. Prints the weight
bytes, that process's peak resident memory (``ru_maxrss``: the mapped weight pages it touched count)
and their ratio, the seconds, and checks ``model.onnx``'s first weight against base + scale * A @ B
computed here from the adapter file. ``--ort-baseline`` also measures a plain ONNX Runtime session
of big.onnx (its default pre-packing) running once, in another fresh process.

    python benchmarks/lora_big_model.py /tmp/big [--layers 8 --width 8192] [--ort-baseline] [--json]

Disk: about 4.5x the weight bytes (the model, and the run folder's three models).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

CHILD = r"""
import json, resource, sys, time
import numpy as np
from onnxforge.runtime import Trainer
from onnxforge.runtime.adapters import LoRA
model, run, data = sys.argv[1:4]
d = np.load(data)
t0 = time.perf_counter()
trainer = Trainer(model, run, loss="cross-entropy", lr=1e-3, progress=False, lora=LoRA(4), threads=2)
trainer.fit((d["x"], d["y"]), epochs=1, batch_size=32, overwrite=True)
seconds = time.perf_counter() - t0
print(json.dumps({"seconds": seconds, "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                  "loss": trainer.history[-1]["loss"], "trainable": trainer.parameter_counts()}))
"""

ORT_CHILD = r"""
import json, resource, sys
import numpy as np, onnxruntime as ort
s = ort.InferenceSession(sys.argv[1])
s.run(None, {"x": np.zeros((1, int(sys.argv[2])), np.float32)})
print(json.dumps({"peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))
"""


def write_model(folder: Path, layers: int, width: int, classes: int = 10) -> int:
    """big.onnx with its weights streamed into big.onnx.data; returns the weight bytes."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    inits, nodes, offset = [], [], 0
    with open(folder / "big.onnx.data", "wb") as f:
        def add(name, shape, scale):
            nonlocal offset
            t = TensorProto(name=name, data_type=TensorProto.FLOAT, dims=shape)
            t.data_location = TensorProto.EXTERNAL
            length = 4 * int(np.prod(shape))
            for k, v in (("location", "big.onnx.data"), ("offset", str(offset)), ("length", str(length))):
                e = t.external_data.add()
                e.key, e.value = k, v
            rows = max(1, (64 << 20) // (4 * shape[-1]))
            for start in range(0, shape[0], rows):
                block = (rng.standard_normal((min(rows, shape[0] - start), *shape[1:])) * scale).astype(np.float32)
                f.write(block.tobytes())
            offset += length
            inits.append(t)
        h = "x"
        for i in range(layers):
            add(f"w{i}", [width, width], 1.0 / np.sqrt(width))
            nodes += [helper.make_node("MatMul", [h, f"w{i}"], [f"m{i}"]), helper.make_node("Relu", [f"m{i}"], [f"h{i}"])]
            h = f"h{i}"
        add("head", [classes, width], 1.0 / np.sqrt(width))
        nodes.append(helper.make_node("Gemm", [h, "head"], ["logits"], transB=1))
    graph = helper.make_graph(nodes, "big", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", width])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", classes])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    (folder / "big.onnx").write_bytes(model.SerializeToString())
    return offset


def check_merged(folder: Path, run: Path) -> tuple[float, float]:
    """max |model.onnx's w0 - (w0 + A @ B)| with A, B from adapters.onnx_adapter (scale folded in),
    and max |A @ B| (what the adapter changed)."""
    from onnxforge.runtime.adapters import read_adapter

    stored = read_adapter(run / "adapters.onnx_adapter").parameters
    base = onnx.load(str(folder / "big.onnx"), load_external_data=False).graph.initializer[0]
    merged = {t.name: t for t in onnx.load(str(run / "model.onnx"), load_external_data=False).graph.initializer}["w0"]

    def mapped(tensor, where):
        entries = {e.key: e.value for e in tensor.external_data}
        return np.memmap(where / entries["location"], np.float32, "r", int(entries.get("offset", 0)), tuple(tensor.dims))

    w, m = mapped(base, folder), mapped(merged, run)
    delta = stored["w0.lora_A"].astype(np.float64) @ stored["w0.lora_B"]
    worst = 0.0
    for start in range(0, w.shape[0], 1024):
        want = w[start:start + 1024].astype(np.float64) + delta[start:start + 1024]
        worst = max(worst, float(np.abs(m[start:start + 1024] - want).max()))
    return worst, float(np.abs(delta).max())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", type=Path)
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--width", type=int, default=8192)
    ap.add_argument("--ort-baseline", action="store_true")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    t0 = time.perf_counter()
    weight_bytes = write_model(args.folder, args.layers, args.width)
    rng = np.random.default_rng(1)
    np.savez(args.folder / "data.npz", x=rng.standard_normal((256, args.width)).astype(np.float32),
             y=rng.integers(0, 10, 256).astype(np.int64))
    written = time.perf_counter() - t0
    run = args.folder / "run"
    out = subprocess.run([sys.executable, "-c", CHILD, str(args.folder / "big.onnx"), str(run),
                          str(args.folder / "data.npz")], capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(out.stderr[-3000:])
    result = json.loads(out.stdout.strip().splitlines()[-1])
    error, change = check_merged(args.folder, run)
    result.update(weight_bytes=weight_bytes, peak_ratio=result["peak_rss"] / weight_bytes, model_written_s=written,
                  merged_max_error=error, adapter_max_change=change,
                  parent_peak_rss=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    if args.ort_baseline:
        base = subprocess.run([sys.executable, "-c", ORT_CHILD, str(args.folder / "big.onnx"), str(args.width)],
                              capture_output=True, text=True, check=True)
        peak = json.loads(base.stdout.strip().splitlines()[-1])["peak_rss"]
        result.update(ort_inference_peak_rss=peak, ort_inference_ratio=peak / weight_bytes)
    if args.json:
        print(json.dumps(result))
        return
    gb = 1e9
    print(f"weights {weight_bytes / gb:.2f} GB in external data; LoRA rank 4, one epoch of 8 steps: "
          f"peak RSS {result['peak_rss'] / gb:.2f} GB = {result['peak_ratio']:.2f}x the weights, {result['seconds']:.0f} s "
          f"(run folder exports included); model.onnx w0 vs base + A @ B: max error {result['merged_max_error']:.2e} "
          f"(A @ B up to {result['adapter_max_change']:.2e})")
    if args.ort_baseline:
        print(f"plain ONNX Runtime session of big.onnx, one run: peak RSS {result['ort_inference_peak_rss'] / gb:.2f} GB "
              f"= {result['ort_inference_ratio']:.2f}x the weights")


if __name__ == "__main__":
    main()
