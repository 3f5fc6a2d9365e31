"""``build_bundle``: a model and the training options of ``onnxforge train`` as a self-contained
training bundle that any ONNX Runtime trains (the layout is in :mod:`onnxforge.runtime.bundle`).

The run is resolved exactly as ``onnxforge train --backend onnx`` resolves it (a
:class:`~onnxforge.runtime.training.trainer.Trainer` is made but never fitted: loss, task,
trainable/frozen parameters, running statistics), the data read and checked by the same code, and
the step model is the onnx backend's own (:func:`~onnxforge.runtime.training.stepgraph.build_step`),
so a loop that follows the manifest takes the steps ``train --backend onnx`` takes.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from typing import Any
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from onnxforge.runtime.bundle import ortweb
from onnxforge.runtime.bundle.describe import describe_eval, describe_step, recipes
from onnxforge.runtime.bundle.offsets import raw_data_offsets, with_raw_data
from onnxforge.runtime.adapters import LoRA
from onnxforge.runtime.errors import ConfigError, DataError
from onnxforge.runtime.modelio.card import ModelCard
from onnxforge.runtime.modelio.files import save_model
from onnxforge.runtime.modelio.weights import model_weights, write_safetensors
from onnxforge.runtime.tasks.evaluation import check_for_model
from onnxforge.runtime.training.epochs import EpochIterator
from onnxforge.runtime.training.export import inference_model
from onnxforge.runtime.training.stepgraph import build_eval, build_step, moment_names
from onnxforge.runtime.training.trainer import Trainer

__all__ = ["BundleOptions", "build_bundle", "FORMAT", "FORMAT_VERSION", "JS_FILES", "WEB_FILES"]

FORMAT, FORMAT_VERSION = "onnxforge-training-bundle", 1
JS_DIR = Path(__file__).resolve().parent / "js"
JS_FILES = ("onnxforge-train.mjs", "safetensors.mjs", "train.mjs")
WEB_FILES = ("index.html",)
WEBGPU_MAX_PACKED = 8  # a packed step's Split/Concat over more pieces than this exceeds WebGPU's 10 storage buffers


@dataclass
class BundleOptions:
    """The training options of ``onnxforge train`` that a bundle fixes (same names and defaults)."""

    epochs: int = 10
    batch_size: int = 32
    lr: float = 1e-3
    optimizer: str = "adamw"
    weight_decay: float = 0.01
    schedule: str = "constant"
    warmup_steps: int = 0
    loss: str = "auto"
    freeze: list = field(default_factory=list)
    seed: int = 0
    shuffle: bool = True
    lora: int | None = None          # LoRA rank: train low-rank adapters of the MatMul/Gemm weights only
    lora_alpha: float | None = None
    lora_targets: tuple = ()


def _trainer(model, out: Path, o: BundleOptions) -> Trainer:
    """The run ``train --backend onnx`` would make (nothing is written: it is never fitted)."""
    lora = LoRA(o.lora, alpha=o.lora_alpha, targets=tuple(o.lora_targets) or None) if o.lora else None
    trainer = Trainer(model, out, loss=o.loss, optimizer=o.optimizer, lr=o.lr, weight_decay=o.weight_decay,
                      schedule=o.schedule, warmup_steps=o.warmup_steps, freeze=list(o.freeze), seed=o.seed,
                      backend="onnx", device="cpu", progress=False, threads=1, lora=lora)
    trainer.config.epochs, trainer.config.batch_size, trainer.config.shuffle = o.epochs, o.batch_size, o.shuffle
    return trainer


def _dataset(trainer: Trainer, data, name: str):
    out = next(o for o in trainer.source.graph.output if o.name == trainer.output_name)
    shape = tuple(d.dim_value if d.HasField("dim_value") else None for d in out.type.tensor_type.shape.dim)
    return check_for_model(data, trainer.inputs, shape, trainer.card, loss=trainer.loss, name=name)


def _feed_shapes(trainer: Trainer, train) -> dict:
    if train is not None:
        return {i.name: tuple(train.inputs[i.name].shape) for i in trainer.inputs}
    shapes = {}
    for i in trainer.inputs:
        if not i.shape or any(not isinstance(d, int) for d in i.shape[1:]):
            raise ConfigError(f"the model's input {i.name!r} has shape {list(i.shape)}: its non-batch dimensions are "
                              "not fixed, so the step model needs --data to size them")
        shapes[i.name] = (1, *i.shape[1:])
    return shapes


def _data_file(path: Path, ds, trainer: Trainer, orders: np.ndarray | None) -> dict:
    tensors = {f"input/{i.name}": np.ascontiguousarray(ds.inputs[i.name]) for i in trainer.inputs}
    tensors["target"] = np.ascontiguousarray(ds.y)
    if orders is not None:
        tensors["order"] = orders
    write_safetensors(tensors, path, {"format": FORMAT})
    return {"file": path.name, "examples": len(ds),
            "tensors": {k: {"dtype": str(v.dtype), "shape": list(v.shape)} for k, v in tensors.items()}}


def _orders(o: BundleOptions, n: int) -> np.ndarray:
    """Each epoch's example order, drawn as the trainer draws it (one permutation per epoch from
    ``numpy.random.default_rng(seed)``): written into the bundle, so no runtime reimplements numpy's
    generator."""
    rng = np.random.default_rng(o.seed)
    return np.stack([rng.permutation(n) for _ in range(o.epochs)]).astype(np.int32)


def _inference_model(trainer: Trainer):
    """The model a bundle trains into: the source in export form, or with LoRA the source with
    its adapters as initialisers (``x @ W + (x @ A) @ B * alpha/rank``), so the trained adapters
    go back into it by name."""
    if trainer.lora is None:
        return trainer.inference_model()
    model = inference_model(trainer.training_source, {})
    return ModelCard.from_model(model).updated(trainer.lora.card()).write_into(model)


def _steps(trainer: Trainer, feed_shapes: dict, web_gpu: bool) -> tuple[dict, dict]:
    """The step model(s): the packed one, and with WebGPU one with every parameter its own input
    when the packed one's Split/Concat has more pieces than WebGPU's storage-buffer limit allows."""
    s = trainer.backend.spec
    kw: dict[str, Any] = dict(output=s.output, loss=s.loss, optimizer=s.optimizer, trainable=list(s.trainable),
              buffers=list(s.state_buffers), feed_shapes=feed_shapes, ignore_index=s.ignore_index,
              weight_decay=s.weight_decay)
    graphs = {"step.onnx": build_step(s.model, **kw)}
    packed = max((len(e) for e in graphs["step.onnx"].packing.packs.values()), default=0)
    if web_gpu and packed > WEBGPU_MAX_PACKED:
        graphs["step_unpacked.onnx"] = build_step(s.model, pack=False, **kw)
    return graphs, {"webgpu": "step_unpacked.onnx" if "step_unpacked.onnx" in graphs else "step.onnx",
                    "wasm": "step.onnx", "node": "step.onnx"}


def build_bundle(model, out, options: BundleOptions | None = None, *, data=None, val=None, web: bool = False,
                 web_backends=("wasm", "webgpu"), ort_web: str | None = None, overwrite: bool = False) -> dict:
    """Write the training bundle of ``model`` to the folder ``out`` (built aside, then renamed into
    place); ``data``/``val`` are paths or datasets as ``train`` takes them. Returns the manifest."""
    o = options or BundleOptions()
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not overwrite:
        raise ConfigError(f"'{out}' already exists and is not empty; pass --overwrite to replace it")
    bad = [b for b in web_backends if b not in ortweb.BACKEND_FILES]
    if bad:
        raise ConfigError(f"web backends must be among {', '.join(ortweb.BACKEND_FILES)}; got {', '.join(bad)}")
    trainer = _trainer(model, out, o)
    train = _dataset(trainer, data, "training data") if data is not None else None
    valid = _dataset(trainer, val, "validation data") if val is not None else None
    if train is not None and len(train) == 0:
        raise DataError("training data: no examples")
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        manifest = _write(stage, trainer, o, train, valid, web, tuple(web_backends), ort_web)
        _follow_umask(stage)
        if out.exists():
            shutil.rmtree(out)
        stage.rename(out)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return manifest


def _write(d: Path, trainer: Trainer, o: BundleOptions, train, valid, web: bool, web_backends, ort_web) -> dict:
    spec = trainer.backend.spec
    graphs, per_backend = _steps(trainer, _feed_shapes(trainer, train), web and "webgpu" in web_backends)
    for name, g in graphs.items():
        save_model(g.model, d / name)
    evaluation = build_eval(spec.model, output=spec.output, loss=spec.loss, params=list(spec.trainable),
                            buffers=list(spec.state_buffers), ignore_index=spec.ignore_index)
    save_model(evaluation.model, d / "eval.onnx")
    inference = _inference_model(trainer)
    weights = model_weights(inference)
    inference = with_raw_data(inference, weights)
    data = inference.SerializeToString()
    (d / "model.onnx").write_bytes(data)
    offsets = raw_data_offsets(data, inference, weights)
    write_safetensors({k: np.asarray(v, np.float32) for k, v in weights.items()}, d / "parameters.safetensors",
                      {"format": FORMAT, "step": "0"})
    moments = {m: np.zeros(weights[p].shape, np.float32) for p in spec.trainable for m in moment_names(o.optimizer, p)}
    write_safetensors(moments, d / "optimizer.safetensors", {"format": FORMAT, "step": "0"})
    n = len(train) if train is not None else None
    batches = EpochIterator([np.zeros((n or 0, 1), np.float32)], np.zeros(n or 0), o.batch_size, shuffle=False,
                            rng=np.random.default_rng(0), drop_last=trainer.fixed_batch is not None)
    steps_per_epoch = batches.steps if n else None
    files = {"train": _data_file(d / "train.safetensors", train, trainer, _orders(o, n or 0) if o.shuffle else None)
             if train is not None else None,
             "val": _data_file(d / "val.safetensors", valid, trainer, None) if valid is not None else None}
    manifest = {
        "format": FORMAT, "format_version": FORMAT_VERSION,
        "model": {"name": trainer.source.graph.name or "model", "inference_model": "model.onnx",
                  "task": trainer.task.name, "output": trainer.output_name, "classes": trainer.card.classes,
                  "inputs": [{"name": i.name, "dtype": str(np.dtype(i.dtype)), "shape": list(i.shape)} for i in trainer.inputs],
                  "weight_offsets": offsets},
        "lora": trainer.lora.card()["lora"] if trainer.lora is not None else None,
        "training": {**asdict(o), "loss": trainer.loss, "weight_decay": o.weight_decay if o.optimizer == "adamw" else 0.0,
                     "steps_per_epoch": steps_per_epoch,
                     "total_steps": steps_per_epoch * o.epochs if steps_per_epoch else None},
        "batch": {"size": o.batch_size, "drop_last": trainer.fixed_batch is not None,
                  "order": "permutations" if o.shuffle else "file",
                  "note": "step k of an epoch takes examples [k*size, (k+1)*size) of the epoch's order (the last "
                          "batch may be smaller unless drop_last); order: the data file's 'order' row of the "
                          "epoch (0-based), or file order"},
        "step": describe_step(graphs["step.onnx"], "step.onnx"),
        "step_variants": {name: describe_step(g, name) for name, g in graphs.items() if name != "step.onnx"},
        "step_for_backend": per_backend,
        "eval": describe_eval(evaluation, "eval.onnx"),
        "parameters": {"file": "parameters.safetensors", "trainable": _infos(weights, spec.trainable),
                       "frozen": _infos(weights, spec.frozen), "buffers": _infos(weights, spec.state_buffers)},
        "optimizer": {"name": o.optimizer, "file": "optimizer.safetensors", "state": _infos(moments, list(moments))},
        **recipes(trainer.config, steps_per_epoch or 0),
        "data": files,
        "files": {},
    }
    if steps_per_epoch is None:
        manifest["schedule"]["total_steps"] = None
    for f in JS_FILES + (WEB_FILES if web else ()):
        shutil.copyfile(JS_DIR / f, d / f)
    if web:
        manifest["web"] = {"backends": list(web_backends), "ort_version": ortweb.ORT_WEB_VERSION,
                           "ort_files": ortweb.copy_ort_web(d / "ort", web_backends, ort_web)}
    (d / "README.md").write_text(_readme(manifest, web))
    manifest["files"] = sorted(str(p.relative_to(d)) for p in d.rglob("*") if p.is_file()) + ["manifest.json"]
    (d / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return manifest


def _readme(manifest: dict, web: bool) -> str:
    t = manifest["training"]
    lines = [f"# Training bundle of {manifest['model']['name']}", "",
             f"{t['optimizer']}, lr {t['lr']}, {t['schedule']} schedule, {t['epochs']} epochs of batch {t['batch_size']}"
             + (f" ({t['total_steps']} steps)" if t["total_steps"] else "") + f", loss {t['loss']}.", "",
             "- Node.js: `ONNXRUNTIME_NODE_INSTALL=skip npm install --no-save onnxruntime-node@1.31.1` in this folder, "
             "then `node train.mjs --weights-out trained.safetensors --model-out trained.onnx`.",
             "- Any ONNX Runtime: `manifest.json` describes the step model's inputs, outputs and state, and how each "
             "step's scalars are computed (onnxforge's README: \"Training in a browser tab or Node.js\").",
             "- Back into the model: `onnxforge weights import model.onnx trained.safetensors -o trained.onnx`."]
    if web:
        lines.insert(4, "- Browser: serve this folder with any static file server (`python -m http.server`) and open "
                        "`index.html` (`?autorun=1` starts at once); it needs no internet.")
    return "\n".join(lines) + "\n"


def _follow_umask(folder: Path) -> None:
    """Files and folders with the modes the umask gives new ones (a static server running as
    another user reads them), not the private modes of the temporary names they were written under."""
    mask = os.umask(0)
    os.umask(mask)
    folder.chmod(0o777 & ~mask)
    for p in folder.rglob("*"):
        p.chmod((0o777 if p.is_dir() else 0o666) & ~mask)


def _infos(values: dict, names) -> list[dict]:
    return [{"name": n, "dtype": "float32", "shape": list(np.shape(values[n]))} for n in names]
