"""``onnxforge bundle``: a training bundle that trains in a browser tab, in Node.js or in any ONNX Runtime."""

from __future__ import annotations

import click

from onnxforge.cli._common import print_json
from onnxforge.cli._data import columns, data_path, table_options
from onnxforge.runtime.bundle import BundleOptions, build_bundle
from onnxforge.runtime.inference.session import model_inputs
from onnxforge.runtime.modelio.card import ModelCard
from onnxforge.runtime.modelio.files import load_model
from onnxforge.runtime.tasks.registry import task_for
from onnxforge.runtime.tasks.sources import open_data
from onnxforge.cli._training import lora_options, step_options

WEB_BACKENDS = ("wasm", "webgpu")


def _backends(ctx, param, value) -> tuple:
    names = tuple(dict.fromkeys(v.strip() for v in value.split(",") if v.strip()))
    bad = [v for v in names if v not in WEB_BACKENDS]
    if bad or not names:
        raise click.BadParameter(f"expected a comma-separated list of {', '.join(WEB_BACKENDS)}; got {value!r}")
    return names


@click.command("bundle")
@click.argument("model", type=click.Path(exists=True))
@click.option("-o", "--out", "out", required=True, type=click.Path(file_okay=False), help="The bundle folder to write.")
@click.option("--data", type=data_path, default=None,
              help="Training data (as `train --data` takes it), stored in the bundle as train.safetensors.")
@click.option("--val", type=data_path, default=None, help="Validation data, stored as val.safetensors.")
@table_options
@step_options
@lora_options("the bundle's model.onnx holds the adapters as initialisers (as train --lora trains them).")
@click.option("--web", is_flag=True, help="Add index.html and onnxruntime-web's files: the bundle trains in a browser tab.")
@click.option("--web-backends", default="wasm,webgpu", show_default=True, callback=_backends,
              help="onnxruntime-web builds a --web bundle carries (wasm about 15 MB, webgpu about 28 MB more).")
@click.option("--ort-web", type=click.Path(exists=True, file_okay=False), default=None,
              help="A folder holding onnxruntime-web's dist files (default: onnxforge's JS folder, the cache "
                   "~/.cache/onnxforge, else `npm pack` once).")
@click.option("--overwrite", is_flag=True, help="Replace an existing bundle folder.")
@click.option("--json", "as_json", is_flag=True, help="Print the manifest's summary as one JSON object.")
def command(model, out, data, val, target, features, epochs, batch_size, lr, optimizer, weight_decay, schedule,
            warmup_steps, loss, freeze, seed, no_shuffle, lora, lora_alpha, lora_targets, web, web_backends, ort_web, overwrite, as_json):
    """Write a training bundle of MODEL to OUT: manifest.json, the training-step model, the
    inference model, initial parameters and optimizer state (.safetensors), the data (with
    --data/--val), the JavaScript trainer (node OUT/train.mjs) and with --web a page that trains
    in the browser (serve OUT from any static file server and open index.html)."""
    if lora is None and (lora_alpha is not None or lora_targets):
        raise click.UsageError("--lora-alpha and --lora-targets need --lora RANK")
    options = BundleOptions(epochs=epochs, batch_size=batch_size, lr=lr, optimizer=optimizer, weight_decay=weight_decay,
                            schedule=schedule, warmup_steps=warmup_steps, loss=loss, freeze=list(freeze), seed=seed,
                            shuffle=not no_shuffle, lora=lora, lora_alpha=lora_alpha, lora_targets=tuple(lora_targets))
    source = load_model(model)
    card = ModelCard.from_model(source)

    def read(path, name):
        if path is None:
            return None
        return open_data(path, model_inputs(source), card, target=target, features=columns(features), name=name,
                         prepare=task_for(card, loss).preparer(card))

    manifest = build_bundle(source, out, options, data=read(data, "training data"), val=read(val, "validation data"),
                            web=web, web_backends=web_backends, ort_web=ort_web, overwrite=overwrite)
    summary = {"path": out, "format_version": manifest["format_version"], "files": manifest["files"],
               "steps_per_epoch": manifest["training"]["steps_per_epoch"],
               "total_steps": manifest["training"]["total_steps"],
               "parameters": len(manifest["parameters"]["trainable"]), "web": bool(web)}
    if as_json:
        print_json(summary)
        return
    click.echo(f"wrote {out}: {len(manifest['files'])} files, {summary['parameters']} trainable parameters"
               + (f", {summary['total_steps']} steps" if summary["total_steps"] else ""))
    click.echo(f"  node {out}/train.mjs" + ("   |   serve the folder and open index.html" if web else ""))
