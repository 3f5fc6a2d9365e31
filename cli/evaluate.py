"""``onnxforge eval``: loss and metrics of a model on a labelled dataset."""

from __future__ import annotations

from pathlib import Path

import click

from onnxforge.cli._common import DEVICE, fmt, print_json
from onnxforge.cli._data import columns, data_path, table_options
from onnxforge.runtime import load
from onnxforge.runtime.tasks.evaluation import checked_dataset, evaluate
from onnxforge.runtime.tasks.ngram import ngram_for_model
from onnxforge.runtime.tasks.registry import task_for
from onnxforge.runtime.tasks.report import class_report
from onnxforge.runtime.tasks.sources import open_data


@click.command("eval")
@click.argument("model", metavar="MODEL_OR_RUNDIR", type=click.Path())
@click.option("--data", required=True, type=data_path,
              help="Test data: an .npz with x (or arrays named after the model's inputs) and y; a .csv/.tsv/.parquet "
                   "table (--target); a folder of class subfolders of images; a .tsv/.txt text file.")
@table_options
@click.option("--report", is_flag=True,
              help="Classifiers: print per-class precision, recall and F1 and write a confusion matrix PNG.")
@click.option("--png", type=click.Path(dir_okay=False), default=None,
              help="Where --report writes the confusion matrix [default: confusion_matrix.png beside the model].")
@click.option("--ngram", type=click.IntRange(min=1), default=None, metavar="N",
              help="Language models: also the perplexity of an interpolated Kneser-Ney N-gram model (3: trigrams) "
                   "counted on the training text, on the same words.")
@click.option("--ngram-train", type=data_path, default=None, metavar="TEXT",
              help="With --ngram: the text to count [default: the one the model's vocabulary was built from].")
@click.option("--batch-size", type=click.IntRange(min=1), default=1024, show_default=True,
              help="Examples per inference call.")
@click.option("--device", type=DEVICE, default="auto", show_default=True, help="Where to run the model.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object.")
def command(model, data, target, features, report, png, ngram, ngram_train, batch_size, device, as_json):
    """Evaluate MODEL (an .onnx file or a run folder) on --data: loss, and accuracy for a classifier."""
    session = load(model, device=device)
    raw = open_data(data, session.inputs, session.card, target=target, features=columns(features),
                    progress=not as_json, name=data, prepare=task_for(session.card, "auto").preparer(session.card))
    ds = checked_dataset(session, raw, name=data)
    result = evaluate(session, ds, batch_size=batch_size)
    if ngram is not None:
        result.update(ngram_for_model(session.card, data, ngram, ngram_train))
    if report:
        result["report"] = _report(session, ds, batch_size, png or _png_beside(model))
    if as_json:
        print_json(result)
        return
    click.echo("  ".join(f"{k} {fmt(v)}" for k, v in result.items() if k != "report"))
    if report:
        rows = result["report"]["classes"]
        width = max(len("class"), *(len(r["name"]) for r in rows))
        click.echo(f"{'class':<{width}}  precision  recall  f1      support")
        for r in rows:
            click.echo(f"{r['name']:<{width}}  {r['precision']:.4f}     {r['recall']:.4f}  {r['f1']:.4f}  {r['support']}")
        click.echo(f"macro f1 {result['report']['macro_f1']:.4f}; confusion matrix: {result['report']['png']}")


def _png_beside(model: str) -> Path:
    p = Path(model)
    return p / "confusion_matrix.png" if p.is_dir() else p.with_name(p.stem + ".confusion_matrix.png")


def _report(session, ds, batch_size: int, png) -> dict:
    from onnxforge.cli.plot import confusion_png
    report = class_report(session, ds, batch_size)
    report["png"] = str(confusion_png(report["confusion"], report["labels"], png))
    return report
