"""``onnxforge infer``: run a model on inputs from a file."""

from __future__ import annotations

from pathlib import Path

import click
import numpy as np

from onnxforge.cli._common import DEVICE, print_json
from onnxforge.runtime.errors import DataError
from onnxforge.runtime import load
from onnxforge.runtime.data import tables
from onnxforge.runtime.data.arrays import read_npy
from onnxforge.runtime.data.datasets import Dataset, load_npz
from onnxforge.runtime.distributed.ray_data import infer_files
from onnxforge.runtime.inference.batches import in_batches, stitch
from onnxforge.runtime.modelio.files import atomic_write_bytes
from onnxforge.runtime.tasks.evaluation import checked_dataset
from onnxforge.runtime.tasks.raw import answers, feeds_from_path, feeds_from_raw, table_features
from onnxforge.runtime.tasks.registry import task_of

MAX_SHOWN = 20


def read_inputs(path: str, input_names: list[str]) -> dict:
    """An .npy (the one input) or an .npz (``x`` or arrays named after the inputs)."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"input file '{p}' does not exist")
    if p.suffix == ".npy":
        if len(input_names) != 1:
            raise DataError(f"an .npy holds one array but the model has {len(input_names)} inputs "
                            f"({', '.join(input_names)}); use an .npz with one array per input")
        return {input_names[0]: read_npy(p)}
    if p.suffix != ".npz":
        raise DataError(f"input file '{p}' must be .npy or .npz; got '{p.suffix or 'no extension'}'")
    return load_npz(p, input_names, need_targets=False).inputs


def _passthrough(session, input_path, features) -> dict[str, list]:
    """The input table's columns that are neither the model's features nor its target, in table
    order (an id, a timestamp, ...): carried to the output beside the predictions."""
    if input_path is None or not tables.is_table(input_path) or session.card.tokenizer:
        return {}
    used = {*table_features(session, input_path, features), session.card.target}
    return tables.read_columns(input_path, [c for c in tables.table_columns(input_path) if c not in used])


def _write_table(output: str, columns: dict[str, list], predictions: list[str]) -> None:
    """-o for raw inputs: the carried columns plus ``prediction`` as .csv, .tsv or .parquet (atomically)."""
    import io

    import pyarrow as pa

    suffix = Path(output).suffix.lower()
    if suffix not in (".csv", ".tsv", ".parquet"):
        raise click.BadParameter(f"for a table, text or image input -o writes .csv, .tsv or .parquet; got "
                                 f"'{suffix or output}'", param_hint="'-o'")
    table = pa.table({**columns, "prediction": predictions})
    buf = io.BytesIO()
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        pq.write_table(table, buf)
    else:
        import pyarrow.csv as pcsv

        pcsv.write_csv(table, buf, pcsv.WriteOptions(delimiter="\t" if suffix == ".tsv" else ","))
    atomic_write_bytes(output, buf.getvalue())


def _infer_raw(session, input_path, texts: list[str], *, batch_size: int, beam: int, max_len, as_json: bool,
               features=None, output=None) -> None:
    """Raw inputs (a table, an image, a folder of images, text): one line per example with the class
    name or the decoded text (a folder's lines start with each image's path; a table with columns
    besides the model's features prints them first, tab-separated under a header); ``--json``:
    ``{"predictions": [...]}`` in input order, with ``"inputs"`` (image paths) or ``"columns"``
    (the table's other columns)."""
    if texts:
        feeds, names = feeds_from_raw(session, texts), None
    else:
        feeds, names = feeds_from_path(session, input_path, progress=not as_json, features=features)
    found = answers(session, feeds, beam=beam, max_len=max_len, batch_size=batch_size)
    carried = {} if texts else _passthrough(session, input_path, features)
    if output:
        _write_table(output, carried or ({"path": names} if names else {"text": list(texts)} if texts else {}), found)
    if as_json:
        print_json({"predictions": found, **({"inputs": names} if names else {}),
                    **({"columns": carried} if carried else {})})
        return
    if carried:
        click.echo("\t".join([*carried, "prediction"]))
        for i, answer in enumerate(found):
            click.echo("\t".join(["" if c[i] is None else str(c[i]) for c in carried.values()] + [answer]))
    else:
        for i, answer in enumerate(found):
            click.echo(f"{names[i]}\t{answer}" if names and len(names) > 1 else answer)
    if output:
        click.echo(f"wrote {output}", err=True)


@click.command("infer")
@click.argument("model", type=click.Path())
@click.option("--input", "input_path", default=None, type=click.Path(dir_okay=True),
              help="Inputs: an .npy for a one-input model, an .npz with x or arrays named after the inputs, a "
                   ".csv/.tsv/.parquet table (the model's feature columns), an image, or a folder of images.")
@click.option("--text", "texts", multiple=True, metavar="STRING",
              help="Raw text for a model with a tokenizer (repeatable): prints the class name or decoded text.")
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None,
              help="Write every output (and predictions for a classifier) to this .npz.")
@click.option("--batch-size", type=click.IntRange(min=1), default=1024, show_default=True,
              help="Examples per inference call.")
@click.option("--device", type=DEVICE, default="auto", show_default=True, help="Where to run the model.")
@click.option("--beam", type=click.IntRange(min=1), default=1, show_default=True,
              help="Encoder-decoders only: beam width of the search (1 decodes greedily).")
@click.option("--max-len", type=click.IntRange(min=1), default=None,
              help="Encoder-decoders only: longest output sequence [default: the model's max_len].")
@click.option("--json", "as_json", is_flag=True, help="Print the outputs as one JSON object.")
@click.option("--features", default=None, metavar="COLUMNS",
              help="For a table: the columns that are the model's inputs, comma-separated [default: the model card's]; "
                   "the table's other columns (an id, ...) are carried to the output beside the prediction.")
@click.option("--engine", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="ray: score --input (a folder or glob of Parquet, CSV or image files) on Ray Data and write "
                   "-o OUT as Parquet: the input's columns plus prediction.")
@click.option("--concurrency", type=click.IntRange(min=1), default=None,
              help="With --engine ray: predictor actors, each loading the model once [default: 1].")
@click.option("--verbose", is_flag=True, help="With --engine ray: show Ray's own INFO log lines (default: warnings only).")
def command(model, input_path, texts, output, batch_size, device, beam, max_len, as_json, features, engine, concurrency, verbose):
    """Run MODEL on the inputs in --input (or --text) and print (or save) what it predicts.

    A table prints one prediction per row (its columns besides --features first, under a header);
    an encoder-decoder reads token ids 'src' (or 'x') and prints the sequences it decodes."""
    from onnxforge.cli._data import columns

    if (input_path is None) == (not texts):
        raise click.UsageError("give --input PATH or --text STRING (repeatable), not both")
    if engine == "ray":
        if not output:
            raise click.UsageError("--engine ray writes its predictions to -o OUT (a Parquet folder); give -o")
        done = infer_files(model, input_path, output, batch_size=batch_size, concurrency=concurrency,
                           num_gpus=1 if device == "cuda" else None, columns=columns(features), verbose=verbose)
        if as_json:
            return print_json(done)
        return click.echo(f"wrote {done['rows']} predictions to {output} ({done['rows_per_s'] or 0:,.0f} rows/s)")
    session = load(model, device=device)
    if texts or Path(input_path).suffix.lower() not in (".npz", ".npy"):
        return _infer_raw(session, input_path, list(texts), batch_size=batch_size, beam=beam, max_len=max_len,
                          as_json=as_json, features=columns(features), output=output)
    task = task_of(session.card)
    if task.src_arrays:
        from onnxforge.cli._seq2seq import infer_seq2seq

        return infer_seq2seq(session, read_inputs(input_path, ["src"]), output=output, as_json=as_json, beam=beam,
                             max_len=max_len, batch_size=batch_size, max_shown=MAX_SHOWN)
    ds = checked_dataset(session, Dataset(read_inputs(input_path, [i.name for i in session.inputs]), None, input_path),
                         need_targets=False, name=input_path)
    names = [o.name for o in session.outputs]
    parts = list(in_batches(session.run, ds.inputs, batch_size))
    outputs = {n: stitch(((rows, out[n]) for rows, out in parts), len(ds), n) for n in names}
    result = dict(outputs)
    main = session.main_output
    classifier = task.class_scores  # tagging too: a label per step
    result.update(task.postprocess(outputs[main]))
    if output:
        import io

        buf = io.BytesIO()
        np.savez(buf, **result)
        atomic_write_bytes(output, buf.getvalue())
    if as_json:
        print_json(result)
        return
    if classifier and result["predictions"].ndim > 1:
        for i, row in enumerate(result["predictions"][:MAX_SHOWN]):
            click.echo(f"{i}: tags {' '.join(map(str, row))}")
    elif classifier:
        labels = session.labels
        for i, (p, c) in enumerate(zip(result["predictions"][:MAX_SHOWN], result["confidence"])):
            name = f" ({labels[p]})" if isinstance(labels, list) and p < len(labels) else ""
            click.echo(f"{i}: class {p}{name}  p={c:.3f}")
    else:
        for i, row in enumerate(outputs[main][:MAX_SHOWN]):
            click.echo(f"{i}: {np.array2string(np.asarray(row), precision=4, max_line_width=120)}")
    if len(ds) > MAX_SHOWN:
        click.echo(f"... {len(ds) - MAX_SHOWN} more rows" + ("" if output else "; use -o OUT.npz or --json for all"))
    if output:
        click.echo(f"wrote {output}")
