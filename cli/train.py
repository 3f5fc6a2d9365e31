"""``onnxforge train``: train a model on .npz, tables, image folders or text."""

from __future__ import annotations

import shlex
from pathlib import Path

import click
from click.core import ParameterSource

from onnxforge.cli._common import DEVICE, print_json
from onnxforge.cli._data import columns, data_path, table_options
from onnxforge.cli._training import lora_options, step_options
from onnxforge.runtime.training.backends import BACKEND_CHOICES
from onnxforge.runtime.training.callbacks import format_record
from onnxforge.runtime.training.config import CHECKPOINT_EVERY, CheckpointPolicy
from onnxforge.runtime import Trainer
from onnxforge.runtime.adapters import LoRA
from onnxforge.runtime.convert.folded import folded_line
from onnxforge.runtime.distributed.ray_train import RayTrain
from onnxforge.runtime.errors import ConfigError
from onnxforge.runtime.tasks.sources import open_data
from onnxforge.runtime.data.tokenizers import KINDS, RESERVED
from onnxforge.runtime.modelio.card import ModelCard, set_metadata
from onnxforge.runtime.modelio.files import load_model

# option name -> Trainer/fit keyword, for the settings a resume takes from the run folder
_SETTINGS = {"epochs": "epochs", "batch_size": "batch_size", "lr": "lr", "optimizer": "optimizer",
             "weight_decay": "weight_decay", "schedule": "schedule", "warmup_steps": "warmup_steps", "loss": "loss",
             "freeze": "freeze", "seed": "seed", "no_shuffle": "shuffle", "backend": "backend"}


def _given(ctx: click.Context, values: dict) -> dict:
    """The settings the user typed (not click's defaults), as Trainer/fit keywords."""
    out = {}
    for name, key in _SETTINGS.items():
        if ctx.get_parameter_source(name) in (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT):
            value = values[name]
            out[key] = (not value) if name == "no_shuffle" else (list(value) if name == "freeze" else value)
    return out


def _policy(ctx, param, value) -> CheckpointPolicy:
    try:
        return CheckpointPolicy.parse(value)
    except ConfigError as exc:
        raise click.BadParameter(str(exc).replace("checkpoint_every must be", "expected")) from None


def with_tokenizer(model: str, file: str):
    """``model`` with the tokenizer in ``file`` written into its card: a JSON object
    ``{"kind": "char"|"word", "tokens": [one string per id, ids 0-3 <pad> <bos> <eos> <unk>],
    "unknown": "unk"|"refuse"}`` (what onnxforge keeps in a text model's card). A model whose card
    names no task becomes a per-step next-token model (task ``tagging``: a causal language model's
    logits ``[N, T, V]`` read ids ``[N, T]``; ``T`` fixed by the model's input, when it is)."""
    import json

    try:
        spec = json.loads(Path(file).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise click.BadParameter(f"cannot read '{file}' as JSON: {str(exc).splitlines()[0]}", param_hint="--tokenizer") from None
    tokens = spec.get("tokens") if isinstance(spec, dict) else None
    if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens) or tuple(tokens[:4]) != RESERVED \
            or spec.get("kind", "char") not in KINDS or spec.get("unknown", "refuse") not in ("unk", "refuse"):
        raise click.BadParameter(f"'{file}' must hold {{\"kind\": \"char\"|\"word\", \"tokens\": [{', '.join(RESERVED)}, ...], "
                                 f"\"unknown\": \"unk\"|\"refuse\"}}", param_hint="--tokenizer")
    source = load_model(model)
    card = {"tokens": tokens, "tokenizer": {"kind": spec.get("kind", "char"), "unknown": spec.get("unknown", "refuse")}}
    if ModelCard.from_model(source).task is None:
        card["task"] = "tagging"
        dims = source.graph.input[0].type.tensor_type.shape.dim
        if len(dims) == 2 and dims[1].HasField("dim_value"):
            card["args"] = {**(ModelCard.from_model(source).args or {}), "steps": int(dims[1].dim_value)}
    return set_metadata(source, card)


def _resume_command(rundir: Path, data: str, val: str | None) -> str:
    parts = ["onnxforge", "train", "--resume", "--out", str(rundir), "--data", data, *(["--val", val] if val else [])]
    return " ".join(shlex.quote(p) for p in parts)


def _interrupted(trainer, rundir: Path, data: str, val: str | None) -> str:
    """What a Ctrl-C kept: the checkpoint of the step it stopped at (saved then), or the last one."""
    done = trainer.interrupted
    if done is not None:
        where = (f"epoch {done['epoch']}, after step {done['epoch_step']} of its {done['epoch_steps']}"
                 if done["epoch_step"] else f"the end of epoch {done['epochs_done']}")
        kept = f"Interrupted: saved the checkpoint at {where} (step {done['step']} of the run)"
    elif (rundir / "checkpoint").is_file():
        kept = f"Interrupted; the last checkpoint is kept (saved {trainer.checkpoint_policy.describe()})"
    else:
        return f"Interrupted before the first checkpoint; nothing was kept in '{rundir}'."
    return f"{kept}. Continue the run with:\n  {_resume_command(rundir, data, val)}"


@click.command("train")
@click.argument("model", required=False, type=click.Path(dir_okay=True))
@click.option("--data", required=True, type=data_path,
              help="Training data: an .npz with x (or arrays named after the model's inputs) and y; a .csv/.tsv/"
                   ".parquet table (--target); a folder of class subfolders of images; a .tsv/.txt text file.")
@click.option("--val", type=data_path, default=None,
              help="Validation data in the same form, evaluated after every epoch.")
@table_options
@step_options
@click.option("--backend", type=click.Choice(BACKEND_CHOICES), default="auto", show_default=True,
              help="What computes the training steps; auto takes the first available.")
@lora_options("the run folder gets model.onnx (merged), model.lora.onnx and adapters.onnx_adapter (ONNX "
              "Runtime's format).")
@click.option("--tokenizer", "tokenizer_file", type=click.Path(exists=True, dir_okay=False), default=None,
              metavar="FILE",
              help="Text data: tokenize with FILE (JSON {\"kind\": \"char\"|\"word\", \"tokens\": [...]}) instead of "
                   "the model card's tokenizer; a model without a task trains as a next-token (causal) language model.")
@click.option("--device", type=DEVICE, default="auto", show_default=True,
              help="Where to train; auto takes CUDA only when it really works.")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True,
              help="Data-parallel workers (with --engine ray; the onnx backend); --batch-size is per worker.")
@click.option("--engine", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="What runs the workers: this process, or Ray Train (pip install 'onnxforge[ray]').")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="ONNX Runtime intra-op threads (default: 1 when a training step is small, every core when it is large).")
@click.option("--out", "rundir", type=click.Path(file_okay=False), default=None,
              help="Run folder for artifacts, checkpoints, model.onnx and metrics.json [default: runs/MODEL-NAME].")
@click.option("--resume", is_flag=True,
              help="Continue the run in --out from its last checkpoint, with the settings it was started with "
                   "(MODEL may be left out; options given again must agree).")
@click.option("--overwrite", is_flag=True, help="Start again in a run folder that already holds a checkpoint (only files onnxforge wrote are replaced).")
@click.option("--checkpoint-every", "checkpoint_every", default=CHECKPOINT_EVERY, show_default=True, callback=_policy,
              metavar="TIME|N",
              help="How often the checkpoint, model.onnx and metrics.json are written: after the first epoch that "
                   "ends TIME (30s, 5m, 1h) after the last save, or every N epochs (1: every epoch); always before "
                   "the first step and after the last epoch. A kill loses only the work since the last save.")
@click.option("--trust-checkpoint", is_flag=True,
              help="With --resume: accept a checkpoint that has no digest record (checkpoint.sha256).")
@click.option("--quiet", is_flag=True, help="Show no progress bar.")
@click.option("--verbose", is_flag=True, help="With --engine ray: show Ray's own INFO log lines and what the workers print (default: warnings only).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object.")
@click.pass_context
def command(ctx, model, data, val, target, features, epochs, batch_size, lr, optimizer, weight_decay, schedule, warmup_steps, loss,
            freeze, seed, no_shuffle, backend, lora, lora_alpha, lora_targets, tokenizer_file, device, workers, engine, threads, rundir, resume, overwrite,
            checkpoint_every, trust_checkpoint, quiet, verbose, as_json):
    """Train MODEL on --data with ONNX Runtime and write the run folder.

    --data and --val read .npz arrays (x, or one per model input, and y), tables (.csv, .tsv,
    .parquet: --target, --features), folders of class subfolders of images, and text
    (source<TAB>target or label<TAB>text lines, or .txt sentences for a language model).

    A checkpoint is written before the first step, then (by default) after the first epoch that
    ends 30 s or more after the last one, and after the last epoch (synced, renamed into place,
    its SHA-256 recorded), with RUNDIR/model.onnx and RUNDIR/metrics.json of the same epoch
    (--checkpoint-every 1 writes them every epoch). A run killed at any moment loses only the work
    since the last checkpoint (about 30 s plus one epoch) and continues with --resume to the same
    weights; a damaged checkpoint is refused, never replaced by a fresh start. One run at a time
    writes a run folder (it is locked).
    """
    if model is None and not (resume and rundir):
        raise click.UsageError("Missing argument 'MODEL' (it may be left out only with --resume and --out).")
    rundir = Path(rundir) if rundir else Path("runs") / Path(model).stem
    if tokenizer_file is not None:
        if model is None:
            raise click.UsageError("--tokenizer goes with MODEL (a resumed run keeps the tokenizer its card has)")
        model = with_tokenizer(model, tokenizer_file)
    if lora is None and (lora_alpha is not None or lora_targets):
        raise click.UsageError("--lora-alpha and --lora-targets need --lora RANK")
    adapters = None
    if lora is not None:
        adapters = LoRA(lora, alpha=lora_alpha, targets=tuple(lora_targets) or None)
    common = dict(device=device, threads=threads or "auto", progress=not quiet, checkpoint_every=checkpoint_every)
    if workers > 1 or engine == "ray":
        if engine != "ray":
            raise click.UsageError("--workers above 1 needs --engine ray (the workers run on Ray Train)")
        common.update(workers=workers, strategy=RayTrain(use_gpu=device == "cuda", verbose=verbose))
    if resume:
        given = _given(ctx, locals())
        if adapters is not None:
            given["lora"] = adapters.record()
        if "batch_size" in given:  # the run folder records the global batch
            given["batch_size"] *= workers
        fit_given = {k: given.pop(k) for k in ("epochs", "batch_size", "shuffle") if k in given}
        trainer = Trainer.from_run(rundir, model, **common, trust_checkpoint=trust_checkpoint, **given, **fit_given)
        fit_kw = {}
    else:
        trainer = Trainer(model, rundir, loss=loss, optimizer=optimizer, lr=lr, weight_decay=weight_decay,
                          schedule=schedule, warmup_steps=warmup_steps, freeze=freeze, seed=seed, backend=backend,
                          lora=adapters, **common)
        fit_kw = dict(epochs=epochs, batch_size=batch_size, shuffle=not no_shuffle)
    if not quiet and not as_json:
        click.echo(f"training on {trainer.device.name} ({trainer.device.reason}) with the {trainer.backend_name} backend; "
                   f"{len(trainer.trainable)} trainable, {len(trainer.frozen)} frozen parameters", err=True)
    folded = folded_line(trainer.source)
    if folded and not as_json:  # the export folded parameters away: say so once, with the fix
        click.echo(f"note: {folded}", err=True)

    def read(path, name):
        return None if path is None else open_data(path, trainer.inputs, trainer.card, target=target,
                                                   features=columns(features), progress=not (quiet or as_json),
                                                   name=name, prepare=trainer.task.preparer(trainer.card))

    train_data, val_data = read(data, "training data"), read(val, "validation data")
    try:
        history = trainer.fit(train_data, val_data, resume=resume, overwrite=overwrite, **fit_kw)
    except KeyboardInterrupt:
        click.echo(_interrupted(trainer, rundir, data, val), err=True)
        ctx.exit(130)
    final = history[-1] if history else {}
    result = {"rundir": str(rundir), "model": str(rundir / "model.onnx"), "device": trainer.device.name, "workers": workers,
              "backend": trainer.backend_name, "loss_function": trainer.loss, "epochs": trainer.epoch,
              "steps": trainer.step, "nothing_done": trainer.finished_before, "final": final, "history": history,
              **trainer.parameter_counts()}
    if trainer.lora is not None:
        result.update(lora_model=str(rundir / "model.lora.onnx"), adapters=str(rundir / "adapters.onnx_adapter"))
    if as_json:
        print_json(result)
        return
    if trainer.finished_before:
        click.echo(f"nothing was done: the run in '{rundir}' already finished its {trainer.epoch} epochs")
    on = (f" on {workers} Ray Train workers (global batch {trainer.config.batch_size})"
          if workers > 1 or engine == "ray" else "")
    click.echo(f"trained {trainer.epoch} epochs ({trainer.step} steps){on}: {format_record(final)}")
    click.echo(f"model: {rundir / 'model.onnx'}   history: {rundir / 'metrics.json'}")
    if trainer.lora is not None:
        counts = trainer.parameter_counts()
        click.echo(f"LoRA: {counts['trainable_parameters']:,} of {counts['total_parameters']:,} parameters trained; "
                   f"adapters: {rundir / 'adapters.onnx_adapter'}   with adapter inputs: {rundir / 'model.lora.onnx'}")
