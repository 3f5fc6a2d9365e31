"""``onnxforge inspect``: what a model holds and whether it can be trained here."""

from __future__ import annotations

from collections import Counter

import click
import numpy as np
from onnx import helper

from onnxforge.cli._common import print_json
from onnxforge import plugins
from onnxforge.runtime.autodiff import AutodiffError, describe_missing, missing_rules
from onnxforge.runtime.convert.folded import folded_line, folded_parameters
from onnxforge.runtime.errors import NotTrainableError, OnnxforgeError
from onnxforge.runtime.inference.session import model_inputs
from onnxforge.runtime.modelio.card import METADATA_PREFIX, ModelCard
from onnxforge.runtime.modelio.files import load_model
from onnxforge.runtime.ort.device import resolve_device
from onnxforge.runtime.passes.gradient_form import trainable_parameters, untrainable_ops
from onnxforge.runtime.passes.pipelines import for_training_source
from onnxforge.runtime.tasks.registry import task_for
from onnxforge.runtime.training.backends import BACKENDS, TrainingSpec, auto_order
from onnxforge.runtime.training.parameters import ParameterPlan
from onnxforge.runtime.training.stepgraph import build_step


def describe_model(path: str) -> dict:
    model = load_model(path)
    params = [
        {"name": t.name, "shape": list(t.dims), "dtype": helper.tensor_dtype_to_np_dtype(t.data_type).name,
         "size": int(np.prod(t.dims))}
        for t in model.graph.initializer
    ]
    float_params = trainable_parameters(model)
    backends, auto = _backends(model, float_params)
    chosen = backends.get(auto, {"trainable": False, "not_trainable_because": "no training backend can run here"})
    rules_missing, rules_unknown = _gradient_rules_missing(model, float_params)
    outputs = []
    for o in model.graph.output:
        tt = o.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in tt.shape.dim]
        outputs.append({"name": o.name, "shape": dims,
                        "dtype": helper.tensor_dtype_to_np_dtype(tt.elem_type).name if tt.elem_type else None})
    return {
        "path": str(path),
        "ir_version": model.ir_version,
        "opsets": {imp.domain or "ai.onnx": imp.version for imp in model.opset_import},
        "producer": f"{model.producer_name} {model.producer_version}".strip(),
        "inputs": [{"name": i.name, "shape": list(i.shape), "dtype": np.dtype(i.dtype).name}
                   for i in model_inputs(model)],
        "outputs": outputs,
        "parameters": params,
        "parameter_count": int(sum(p["size"] for p in params if p["dtype"].startswith("float"))),
        "ops": dict(Counter((n.domain + "." if n.domain else "") + n.op_type for n in model.graph.node)),
        "functions": [f"{f.domain}.{f.name}" for f in model.functions],
        "metadata": ModelCard.from_model(model).to_dict(),
        "other_metadata": {p.key: p.value for p in model.metadata_props if not p.key.startswith(METADATA_PREFIX)},
        "trainable": chosen["trainable"],  # by the backend `train --backend auto` picks here
        "not_trainable_because": chosen["not_trainable_because"],
        "backend_auto": auto,
        "backends": backends,
        "gradient_rules_missing": rules_missing,
        "gradient_rules_unknown_because": rules_unknown,
        "folded": [str(f) for f in folded_parameters(model)],
        "folded_line": folded_line(model),
    }


def _backends(model, float_params) -> tuple[dict, str | None]:
    """Per training backend, the checks it makes before any work: ``{name: {"available": bool,
    "unavailable_because", "trainable": bool, "not_trainable_because"}}``, and the name
    ``--backend auto`` picks here (None when none can run)."""
    try:
        base, refused = plugins.prepare_training(model), None
    except OnnxforgeError as exc:  # e.g. a plugin op with only a Python kernel
        base, refused = model, str(exc)
    output = _trained_output(model)

    def artifacts():
        return "; ".join(untrainable_ops(base, float_params)) or _artifacts_problem(model, output)

    def onnx():
        try:
            missing = describe_missing(missing_rules(base, float_params, output, reasons=True))
        except AutodiffError as exc:
            return str(exc)
        return missing or _step_problem(model, output)

    checks = {"artifacts": artifacts, "onnx": onnx}
    out = {}
    for name, cls in BACKENDS.items():
        why = refused or ("the model has no float parameters" if not float_params else checks[name]() or None)
        reason = cls.available()
        out[name] = {"available": reason is None, "unavailable_because": reason,
                     "trainable": why is None, "not_trainable_because": why}
    auto = next((cls.name for cls in auto_order(model) if out[cls.name]["available"]), None)
    return out, auto


def _step_problem(model, output: str) -> str | None:
    """Why the onnx backend's training step would not build (None: it builds). The same build the
    backend runs on the first batch: the model's default loss and the trainable parameters as
    ``train`` picks them, a batch of 2 with the declared non-batch sizes (symbolic ones stay symbolic)."""
    try:
        task = task_for(ModelCard.from_model(model), "auto")
        plan = ParameterPlan.of(model, [])
        shapes = {i.name: (2, *i.shape[1:]) for i in model_inputs(model)
                  if i.shape and all(isinstance(d, int) for d in i.shape[1:])}
        build_step(for_training_source(model), output=output, loss=task.default_loss, optimizer="adamw",
                   trainable=list(plan.trainable), buffers=list(plan.buffers), feed_shapes=shapes,
                   ignore_index=task.ignore_index)
    except Exception as exc:  # noqa: BLE001 - any failure means "not trainable", said in one line
        text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return f"the training step does not build: {text}"
    return None


def _artifacts_problem(model, output: str) -> str | None:
    """Why the artifacts backend's training artifacts would not generate (None: they do): the same
    generation ``train`` runs, in a scratch folder (ONNX Runtime training's gradient builder refuses
    forms no op list predicts, e.g. a LayerNormalization without its Mean/InvStdDev outputs)."""
    import tempfile
    from pathlib import Path

    if BACKENDS["artifacts"].available() is not None:
        return None  # not installed here: "available" says so
    try:
        task = task_for(ModelCard.from_model(model), "auto")
        plan = ParameterPlan.of(model, [])
        spec = TrainingSpec(for_training_source(model), output, tuple(i.name for i in model_inputs(model)),
                            task.default_loss, task.ignore_index, "adamw", 0.01, plan.trainable, plan.frozen,
                            plan.buffers, resolve_device("cpu"))
        with tempfile.TemporaryDirectory() as scratch:
            BACKENDS["artifacts"](spec).prepare(Path(scratch) / "artifacts", None)
    except Exception as exc:  # noqa: BLE001 - any failure means "not trainable", said in one line
        text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return text
    return None


def _trained_output(model) -> str:
    """The output a run trains: the model card's, else the first (as the Trainer picks it)."""
    try:
        named = ModelCard.from_model(model).output
    except OnnxforgeError:
        named = None
    return named or model.graph.output[0].name


def _gradient_rules_missing(model, float_params) -> tuple[list[str] | None, str | None]:
    """The ops (as "Op (node)") onnxforge's own differentiation (runtime.autodiff, the onnx
    training backend) has no rule for: those on a path from the float parameters to an output
    (forms a rule does not cover count too), or any in the graph when there are no parameters;
    ``(None, why)`` when the model cannot be differentiated at all (e.g. its opset cannot be raised)."""
    try:
        base = plugins.prepare_training(model)  # plugin ops with function bodies get differentiated
    except NotTrainableError:
        base = model
    found = []
    try:
        if float_params:
            for out in model.graph.output:
                found += missing_rules(base, float_params, out.name)
        else:
            found = missing_rules(base)
    except AutodiffError as exc:
        return None, str(exc)
    return list(dict.fromkeys(f"{op} ({name})" if name else op for op, name in found)), None


def _dims(shape) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"


def _trainable_line(info) -> str:
    auto = info["backend_auto"]
    if info["trainable"]:
        return f"trainable here: yes (backend auto picks {auto})"
    others = [n for n, b in info["backends"].items() if b["available"] and b["trainable"]]
    hint = f"; --backend {others[0]} trains it" if others else ""
    return f"trainable here: no ({info['not_trainable_because']}){hint}"


@click.command("inspect")
@click.argument("model", type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="Print the description as one JSON object.")
def command(model, as_json):
    """Show MODEL's inputs, outputs, parameters, opsets, metadata and whether it can be trained here."""
    info = describe_model(model)
    if as_json:
        print_json(info)
        return
    echo = click.echo
    echo(f"{info['path']}: IR {info['ir_version']}, opsets "
         + ", ".join(f"{d} {v}" for d, v in info["opsets"].items()))
    for key in ("inputs", "outputs"):
        echo(f"{key}:")
        for io in info[key]:
            echo(f"  {io['name']}: {io['dtype']} {_dims(io['shape'])}")
    echo(f"parameters: {len(info['parameters'])} tensors, {info['parameter_count']:,} float values")
    for p in info["parameters"][:40]:
        echo(f"  {p['name']}: {p['dtype']} {_dims(p['shape'])} ({p['size']:,})")
    if len(info["parameters"]) > 40:
        echo(f"  ... {len(info['parameters']) - 40} more (use --json for all)")
    echo("ops: " + ", ".join(f"{op} x{n}" for op, n in info["ops"].items()))
    if info["metadata"]:
        echo("metadata:")
        for k, v in info["metadata"].items():
            echo(f"  {k}: {v}")
    echo(_trainable_line(info))
    for name, b in info["backends"].items():
        verdict = "yes" if b["trainable"] else f"no ({b['not_trainable_because']})"
        absent = "" if b["available"] else f"; not available here ({b['unavailable_because']})"
        echo(f"  {name} backend: {verdict}{absent}")
    missing = info["gradient_rules_missing"]
    if missing is None:
        rules = f"unknown ({info['gradient_rules_unknown_because']})"
    else:
        rules = ", ".join(missing) + " lack one" if missing else "every op has one"
    echo(f"gradient rules (onnx backend): {rules}")
    if info["folded_line"]:
        echo(info["folded_line"])


