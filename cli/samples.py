"""``onnxforge samples``: write the files the README's examples use (no downloads)."""

from __future__ import annotations

import click

from onnxforge.cli._common import print_json
from onnxforge.runtime.errors import DataError
from onnxforge.samples.examples import write_examples


@click.command("samples")
@click.argument("folder", type=click.Path(file_okay=False), default="data")
@click.option("--overwrite", is_flag=True, help="Replace files in FOLDER that hold other content.")
@click.option("--quiet", is_flag=True, help="Show no progress bar.")
@click.option("--json", "as_json", is_flag=True, help="Print the files written as one JSON object.")
def command(folder, overwrite, quiet, as_json):
    """Write the example data into FOLDER (default: data): the bundled digits as .npz files and as PNG
    class folders, the wine table (train, test, and new bottles with an id column), a text corpus,
    digit-strip captions, number-word pairs and the serving recipe's data. Nothing is downloaded;
    running it again changes nothing."""
    try:
        written = write_examples(folder, overwrite=overwrite, progress=not (quiet or as_json))
    except FileExistsError as exc:
        raise DataError(f"{exc}; pass --overwrite to replace it, or choose another folder") from None
    if as_json:
        return print_json({"folder": folder, "files": [str(p) for p in written]})
    click.echo(f"wrote {len(written)} files to {folder}/ (digits as .npz and PNG folders, wine tables, corpus.txt, "
               "captions.tsv, number-word pairs, the serving recipe's pets_*.npz)")
