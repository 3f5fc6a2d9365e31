"""Conversion between PyTorch, ONNX and weight files; the direction follows the file types.

- ``.onnx`` -> ``.onnx``: opset converted, plugin functions and constants folded, IR lowered
- ``.onnx`` -> ``.pt2``: an interpreter ``nn.Module`` with the same weights, ``torch.export``-ed
- ``.pt2`` -> ``.onnx``: PyTorch's TorchScript exporter, dynamic batch, parameters as initialisers
- ``.pt`` / ``.ts`` (TorchScript) -> ``.onnx``: the same, with input shapes given
- ``.onnx`` -> ``.npz`` / ``.safetensors``: the model's weights

PyTorch files are read only when reading them runs no code from them (see
:mod:`onnxforge.runtime.convert.trust`): TorchScript, and ``.pt2`` archives with pickled content,
need ``trust_source=True`` (``--trust-source``).

Every conversion checks itself unless ``verify=False``: source and result run on the same random
inputs, and the report carries the largest absolute difference (``max_abs_diff``).

May import: errors, modelio, ort, plugins, graphs, passes, inference, data, tasks.
"""

from __future__ import annotations

import time
from pathlib import Path

from onnxforge.runtime.convert.to_torch import SUPPORTED_OPS
from onnxforge.runtime.convert.trust import check_source
from onnxforge.runtime.errors import ConfigError, ConversionError, ModelError, NotTrainableError
from onnxforge.runtime.convert.folded import FIX, folded_parameters
from onnxforge.runtime.convert.verify import compare, random_feeds, random_inputs, run
from onnxforge.runtime.modelio.card import ModelCard
from onnxforge.runtime.modelio.files import load_model, save_model
from onnxforge.runtime.modelio.weights import load_weights, model_weights, save_weights
from onnxforge.runtime.passes.fold import FoldConstants
from onnxforge.runtime.passes.gradient_form import trainable_parameters
from onnxforge.runtime.passes.plugin_forms import InlinePlugins

__all__ = ["convert", "kind_of", "SUPPORTED_OPS", "DEFAULT_TOLERANCE", "SUFFIXES"]

DEFAULT_TOLERANCE = 1e-4
_KINDS = {".onnx": "onnx", ".pt2": "pt2", ".pt": "torchscript", ".ts": "torchscript", ".npz": "weights",
          ".safetensors": "weights"}
SUFFIXES = tuple(_KINDS)  # the file types convert reads or writes


def kind_of(path) -> str:
    """``onnx``, ``pt2``, ``torchscript`` or ``weights`` from the file's suffix."""
    suffix = Path(path).suffix.lower()
    if suffix not in _KINDS:
        raise ConfigError(f"'{path}': onnxforge converts .onnx, .pt2, .pt/.ts (TorchScript), .npz and "
                          f".safetensors files; the suffix {suffix or '(none)'} is none of these")
    return _KINDS[suffix]


class _Stages:
    def __init__(self, names: list[str], progress: bool):
        import sys

        from tqdm.auto import tqdm

        self.bar = tqdm(total=len(names), desc="convert", unit="step", leave=False, disable=not progress,
                        file=sys.stderr, bar_format="{desc} [{n_fmt}/{total_fmt}] {elapsed}")
        self.names = names

    def __call__(self, name: str) -> None:
        self.bar.set_description_str(f"convert: {name}", refresh=False)
        if self.bar.n < self.bar.total:
            self.bar.update(1)

    def close(self):
        self.bar.close()


def convert(source, destination, *, opset: int | None = None, verify: bool = True, input_shapes=(),
            sizes: dict | None = None, dynamic_batch: bool = False, tolerance: float = DEFAULT_TOLERANCE,
            progress: bool = False, seed: int = 0, trust_source: bool = False, for_training: bool = False) -> dict:
    """Convert ``source`` into ``destination`` and return a report.

    ``opset``: the ONNX opset of an ONNX result (default: 17 for PyTorch exports and old models,
    otherwise the source's, capped at what the runtime accepts). ``input_shapes``: for TorchScript
    sources, one shape per input (``"1,3,32,32"`` or ``"int64:1,20"``; dim 0 becomes the dynamic
    batch). ``sizes``: example sizes of named dynamic dims for a .pt2 result (``{"T": 20}``; an
    LSTM's sequence length is fixed at it, see :func:`to_torch.export_program`). ``dynamic_batch``: an
    ONNX model made for a fixed batch (1, 4, ...) gets a dynamic batch (verified example by example).
    ``trust_source``: read TorchScript and pickled ``.pt2`` content, which runs code from the file
    (refused with :class:`UnsafeModelError` otherwise, before PyTorch opens it). ``tolerance``: the
    largest difference verification accepts, times the largest output magnitude when that is above
    1, before it raises :class:`ConversionError` (the result stays written, for inspection).
    ``for_training``: the result must keep every parameter (see :func:`_check_for_training`): a
    PyTorch source's every parameter and buffer becomes a named initialiser, and an ONNX source
    whose export folded parameters away (:mod:`.folded`) is refused, naming the nodes and the fix.
    """
    source, destination = Path(source), Path(destination)
    src_kind, dst_kind = kind_of(source), kind_of(destination)
    if not source.is_file():
        raise ModelError(f"source file '{source}' does not exist")
    if source.resolve() == destination.resolve():
        raise ConfigError("the destination must differ from the source")
    direction = (src_kind, dst_kind)
    handlers = {("onnx", "onnx"): _onnx_to_onnx, ("onnx", "pt2"): _onnx_to_pt2, ("pt2", "onnx"): _torch_to_onnx,
                ("torchscript", "onnx"): _torch_to_onnx, ("onnx", "weights"): _onnx_to_weights}
    if direction not in handlers:
        raise ConfigError(f"no conversion from {src_kind} ({source.suffix}) to {dst_kind} ({destination.suffix}); "
                          "onnxforge converts .onnx to .onnx/.pt2/.npz/.safetensors and .pt2/.pt/.ts to .onnx")
    if sizes and direction != ("onnx", "pt2"):
        raise ConfigError("--dim sets example sizes for ONNX to .pt2 conversions only")
    if dynamic_batch and direction != ("onnx", "onnx"):
        raise ConfigError("--dynamic-batch applies to ONNX to ONNX conversions")
    extra = {"dynamic_batch": True} if dynamic_batch else {}
    if for_training and dst_kind != "onnx":
        raise ConfigError("--for-training makes an ONNX model to train: the destination must be an .onnx file")
    if for_training and src_kind in ("pt2", "torchscript"):
        extra["for_training"] = True
    if for_training and src_kind == "onnx":
        _refuse_folded(source)
    if input_shapes and src_kind != "torchscript":
        raise ConfigError("--input-shape is only for TorchScript sources (.pt, .ts); a .pt2 program carries its own")
    if "pt2" in direction or "torchscript" in direction:
        import importlib.util

        if importlib.util.find_spec("torch") is None:
            raise ConversionError("converting from or to PyTorch needs PyTorch: pip install 'onnxforge[torch]'")
    check_source(source, src_kind, trust_source)
    destination.parent.mkdir(parents=True, exist_ok=True)
    stages = _Stages(["load", "convert", "save", "verify"], progress)
    t0 = time.perf_counter()
    try:
        report = handlers[direction](source, destination, opset=opset, input_shapes=list(input_shapes),
                                     sizes=dict(sizes or {}), stages=stages, verify=verify, seed=seed, **extra)
    finally:
        stages.close()
    report.update({"source": str(source), "destination": str(destination), "from": src_kind, "to": dst_kind,
                   "seconds": round(time.perf_counter() - t0, 3)})
    if for_training:
        _check_for_training(destination, report)
    if verify and report.get("max_abs_diff") is not None:
        report["tolerance"] = tolerance
        # absolute for outputs up to 1 in magnitude, relative to the largest output above that
        allowed = tolerance * report.get("output_scale", 1.0)
        report["verified"] = report["max_abs_diff"] <= allowed
        if not report["verified"]:
            raise ConversionError(
                f"verification failed: on random inputs the result differs from the source by up to "
                f"{report['max_abs_diff']:.3g} (allowed {allowed:.3g}: tolerance {tolerance:g} times the outputs' "
                f"magnitude {report.get('output_scale', 1.0):.3g}, at least 1); '{destination}' was written for inspection")
    else:
        report["verified"] = None
    return report


def _refuse_folded(source) -> None:
    """An ONNX file whose export folded batch norm into convolutions cannot be unfolded: the batch
    norm's parameters are not in it."""
    found = [f for f in folded_parameters(load_model(source)) if f.kind != "constant"]
    if found:
        places = "; ".join(str(f) for f in found[:3]) + (f"; and {len(found) - 3} more" if len(found) > 3 else "")
        raise ConversionError(f"'{source}' cannot be made trainable with every parameter: its export folded batch "
                              f"norm away ({places}), and the folded parameters are not in the file. Re-export: {FIX}")


def _check_for_training(destination, report: dict) -> None:
    """The result holds every parameter as an initialiser: nothing folded, no constant weights,
    and (from PyTorch) every parameter and buffer of the source under its name."""
    model = load_model(destination)
    found = folded_parameters(model)
    if found:
        raise ConversionError(f"the result '{destination}' still has folded parameters: "
                              + "; ".join(str(f) for f in found[:3]))
    missing = report.get("parameters_missing") or []
    if missing:
        raise ConversionError(f"the export dropped {len(missing)} of the source's parameters "
                              f"({', '.join(missing[:5])}); '{destination}' was written for inspection")
    report["for_training"] = True


def _standard_ops(model):
    """Plugin ops with ONNX function bodies written out as standard ops (so the result needs no
    plugin); a model with kernel-only plugin ops is returned as it is."""
    try:
        return InlinePlugins()(model).model
    except NotTrainableError:
        return model


def _verify(stages, src_kind, src, dst_kind, dst, feeds) -> dict:
    import numpy as np

    stages("verify")
    expected, src_engine = run(src_kind, src, feeds)
    got, dst_engine = run(dst_kind, dst, feeds)
    scale = max([float(np.max(np.abs(np.asarray(e, np.float64)))) for e in expected if np.size(e)] + [1.0])
    return {"max_abs_diff": compare(expected, got), "output_scale": scale,
            "verified_with": {"source": src_engine, "result": dst_engine},
            "verify_inputs": {k: list(v.shape) for k, v in feeds.items()}}


def _onnx_to_onnx(source, destination, *, opset, input_shapes, sizes, stages, verify, seed, dynamic_batch=False) -> dict:
    from onnxforge.runtime.convert.onnx_upgrade import upgrade
    stages("load")
    model = load_model(source)
    stages("convert")
    result, report = upgrade(_standard_ops(model), opset, dynamic_batch=dynamic_batch)
    stages("save")
    save_model(result, destination)
    if verify and dynamic_batch:
        report.update(_verify_batched(stages, model, result, seed))
    elif verify:
        report.update(_verify(stages, "onnx", model, "onnx", result, random_feeds(model, seed=seed)))
    return report


def _verify_batched(stages, model, result, seed: int, batch: int = 3) -> dict:
    """The batch-1 source run once per example against the result run on the whole batch."""
    import numpy as np

    stages("verify")
    singles = [random_feeds(model, seed=seed + i) for i in range(batch)]
    runs = [run("onnx", model, feeds) for feeds in singles]
    expected = [np.concatenate([r[0][k] for r in runs]) for k in range(len(runs[0][0]))]
    feeds = {name: np.concatenate([f[name] for f in singles]) for name in singles[0]}
    got, engine = run("onnx", result, feeds)
    scale = max([float(np.max(np.abs(e))) for e in expected if e.size] + [1.0])
    return {"max_abs_diff": compare(expected, got), "output_scale": scale,
            "verified_with": {"source": f"{runs[0][1]}, one example at a time", "result": engine},
            "verify_inputs": {k: list(v.shape) for k, v in feeds.items()}}


def _onnx_to_pt2(source, destination, *, opset, input_shapes, sizes, stages, verify, seed) -> dict:
    from onnxforge.runtime.convert.onnx_upgrade import upgrade
    from onnxforge.runtime.convert.to_torch import DEFAULT_EXAMPLE_SIZE, check_supported, export_program
    if opset is not None:
        raise ConfigError("--opset applies to ONNX results; a .pt2 has no opset")
    stages("load")
    model = load_model(source)
    check_supported(_standard_ops(model))  # name unsupported ops before any work
    stages("convert")
    prepared, _ = upgrade(_standard_ops(model), fold=False)
    check_supported(prepared)
    params = {t.name for t in prepared.graph.initializer if t.data_type in (1, 10, 11, 16) and len(t.dims) > 0}
    prepared = FoldConstants(keep=params)(prepared).model
    info = export_program(prepared, destination, sizes=sizes)
    stages("save")
    report = {"inputs": info["inputs"], "outputs": info["outputs"], "dynamic_dims": info["dynamic"],
              "fixed_dims": info["fixed"], "parameters": len(params)}
    if verify:
        # a batch size the export never saw; dims torch.export fixed keep their example size
        batch_fixed = any(0 in dims for dims in info["fixed"].values())
        feeds = random_feeds(model, seed=seed, batch=2 if batch_fixed else 3, other=DEFAULT_EXAMPLE_SIZE, sizes=sizes)
        report.update(_verify(stages, "onnx", model, "pt2", destination, feeds))
    return report


def _torch_to_onnx(source, destination, *, opset, input_shapes, sizes, stages, verify, seed, for_training=False) -> dict:
    import torch

    from onnxforge.runtime.convert.from_torch import (DEFAULT_OPSET, export_onnx, load_program, parse_input_shape,
                                                      torchscript_specs)
    from onnxforge.runtime.convert.onnx_upgrade import _ir_for, _limits
    stages("load")
    kind = "pt2" if source.suffix.lower() == ".pt2" else "torchscript"
    sidecar = {}
    if kind == "pt2":
        module, specs, sidecar = load_program(source)
    else:
        if not input_shapes:
            raise ConfigError(f"a TorchScript file carries no input shapes: give --input-shape for each input of "
                              f"'{source}' (e.g. --input-shape 1,3,32,32)")
        try:
            module = torch.jit.load(str(source)).eval()
        except Exception as exc:  # noqa: BLE001
            raise ModelError(f"'{source}' is not a readable TorchScript file ({str(exc).splitlines()[0]})") from None
        specs = torchscript_specs(module, [parse_input_shape(s) for s in input_shapes])
    max_ir, max_opset = _limits()
    target = DEFAULT_OPSET if opset is None else int(opset)
    if target > max_opset:
        raise ConversionError(f"--opset {target} is above what the installed ONNX Runtime accepts ({max_opset})")
    stages("convert")
    example = random_inputs(specs, batch=2, seed=seed)
    model = export_onnx(module, specs, example, opset=target, output_names=sidecar.get("outputs"))
    model.ir_version = min(model.ir_version, _ir_for(target, max_ir))
    _rename_initializers(model, sidecar.get("names") or {})
    model.producer_name = "onnxforge"
    props = sidecar.get("metadata_props") or {}  # every property of the ONNX file it came from, as it was
    for key, value in props.items():
        prop = model.metadata_props.add()
        prop.key, prop.value = key, value
    if not props:
        model = ModelCard.from_model(model).updated({"source": {"format": kind, "file": source.name}}).write_into(model)
    stages("save")
    save_model(model, destination)
    dynamic = [s.name for s in specs if s.shape and s.shape[0] is None]
    fixed = {s.name: {0: s.shape[0]} for s in specs if s.shape and isinstance(s.shape[0], int)}
    report = {"inputs": [s.name for s in specs], "outputs": [o.name for o in model.graph.output],
              "to_opset": target, "to_ir": model.ir_version, "parameters": len(trainable_parameters(model)),
              "dynamic_batch": dynamic, "fixed_dims": fixed}
    if for_training:  # every parameter and buffer of the source, by its name (or the name it had in ONNX)
        inits = {t.name for t in model.graph.initializer}
        renames = sidecar.get("names") or {}
        wanted = [n for n, _ in list(module.named_parameters()) + list(module.named_buffers())
                  if not n.endswith("num_batches_tracked")]
        report["parameters_missing"] = [n for n in wanted if n not in inits and renames.get(n) not in inits]
    if verify:
        feeds = random_inputs(specs, batch=3, seed=seed + 1)
        report.update(_verify(stages, kind, source, "onnx", model, feeds))
    return report


def _rename_initializers(model, names: dict) -> None:
    """Give initialisers back the ONNX names they had before a trip through PyTorch."""
    if not names:
        return
    taken = {t.name for t in model.graph.initializer}
    renames = {old: new for old, new in names.items() if old in taken and new not in taken}
    for t in model.graph.initializer:
        t.name = renames.get(t.name, t.name)
    for node in model.graph.node:
        for i, name in enumerate(node.input):
            if name in renames:
                node.input[i] = renames[name]


def _onnx_to_weights(source, destination, *, opset, input_shapes, sizes, stages, verify, seed) -> dict:
    import numpy as np

    if opset is not None:
        raise ConfigError("--opset applies to ONNX results, not to weight files")
    stages("load")
    model = load_model(source)
    stages("convert")
    stages("save")
    report = save_weights(model, destination)
    if verify:
        stages("verify")
        expected, got = model_weights(model), load_weights(destination)
        if set(expected) != set(got):
            raise ConversionError(f"the weights written to '{destination}' do not hold the model's tensors")
        report["max_abs_diff"] = max((float(np.max(np.abs(expected[k] - got[k]))) for k in expected if expected[k].size),
                                     default=0.0)
        report["verified_with"] = {"source": "onnx initialisers", "result": "read back"}
    return report
