"""``onnxforge convert``: between PyTorch, ONNX and weight files, checked on random inputs."""

from __future__ import annotations

import click

from onnxforge.cli._common import print_json
from onnxforge.runtime.convert import SUFFIXES, convert


class ModelFile(click.ParamType):
    """A file path whose suffix onnxforge can convert from or to."""

    name = "FILE"

    def __init__(self, must_exist: bool):
        self.must_exist = must_exist

    def convert(self, value, param, ctx):
        from pathlib import Path

        path = Path(value)
        if path.suffix.lower() not in SUFFIXES:
            self.fail(f"'{value}' must end in one of {', '.join(SUFFIXES)} (the suffix picks the format)", param, ctx)
        if self.must_exist and not path.is_file():
            self.fail(f"'{value}' does not exist", param, ctx)
        return path


class DimSize(click.ParamType):
    """``NAME=SIZE``: the example size of a named dynamic dimension."""

    name = "NAME=SIZE"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        name, _, size = str(value).partition("=")
        if not name or not size.isdigit() or int(size) < 1:
            self.fail(f"expected NAME=SIZE with a positive size, like T=20; got {value!r}", param, ctx)
        return name.strip(), int(size)


@click.command("convert")
@click.argument("source", type=ModelFile(must_exist=True))
@click.option("-o", "--output", "destination", type=ModelFile(must_exist=False), required=True,
              help="Where to write the result; its suffix picks the format (.onnx, .pt2, .npz, .safetensors).")
@click.option("--opset", type=click.IntRange(7, 21), default=None,
              help="ONNX opset of an ONNX result. Default: 17 for PyTorch exports and for models older than "
                   "opset 13, otherwise the source's (capped at what the installed ONNX Runtime accepts).")
@click.option("--input-shape", "input_shapes", multiple=True, metavar="SHAPE",
              help="Example shape of one input of a TorchScript source, e.g. 1,3,32,32 or int64:1,20 "
                   "(repeat for each input; the first dimension becomes the dynamic batch).")
@click.option("--dim", "dims", type=DimSize(), multiple=True, metavar="NAME=SIZE",
              help="Example size of a named dynamic dimension for a .pt2 result, e.g. T=20 (repeatable). "
                   "torch.export fixes an LSTM's sequence length at its example size (default 8).")
@click.option("--dynamic-batch", is_flag=True,
              help="For an ONNX model made for a fixed batch (1, or the 4 of a torch.onnx.export example): make the "
                   "first dimension of its inputs and outputs dynamic (Reshape targets starting with that size copy "
                   "the batch); verified batch by batch.")
@click.option("--trust-source", is_flag=True,
              help="Read a TorchScript file or a .pt2 with pickled content, which runs code from the file; "
                   "give it only for files from a source you trust (without it they are refused).")
@click.option("--for-training", is_flag=True,
              help="Make an ONNX model that keeps every parameter for training: from a .pt2/.pt/.ts, every parameter "
                   "and buffer of the program becomes an initialiser under its name (checked); an .onnx whose export "
                   "folded batch norm into convolutions is refused, naming the nodes (re-export from PyTorch).")
@click.option("--no-verify", is_flag=True, help="Skip running source and result on the same random inputs.")
@click.option("--tolerance", type=click.FloatRange(min=0), default=1e-4, show_default=True,
              help="Largest difference between source and result that verification accepts "
                   "(relative to the largest output where outputs exceed 1 in magnitude).")
@click.option("--quiet", is_flag=True, help="Show no progress bar.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON object.")
def command(source, destination, opset, input_shapes, dims, dynamic_batch, trust_source, for_training, no_verify,
            tolerance, quiet, as_json):
    """Convert SOURCE into the file given by -o; the direction follows the file types.

    PyTorch to ONNX: a torch.export program (.pt2) or a TorchScript file (.pt, .ts, with
    --input-shape; read only with --trust-source, as loading TorchScript runs code from the
    file, and so are .pt2 files with pickled content), with a dynamic batch dimension and the parameters kept as trainable
    initialisers. ONNX to PyTorch (.pt2): a torch.export program of a module with the same
    weights, named after the initialisers. ONNX to ONNX: another opset, a form the installed ONNX
    Runtime can run and train (old opsets upgraded, constant weights folded into initialisers).
    ONNX to .npz or .safetensors: the model's weights (load them back with 'onnxforge weights
    import'). Unless --no-verify, source and result run on the same random inputs and the largest
    difference is reported; above --tolerance the command fails.
    """
    report = convert(source, destination, opset=opset, verify=not no_verify, input_shapes=input_shapes,
                     sizes=dict(dims), dynamic_batch=dynamic_batch, tolerance=tolerance, progress=not quiet and not as_json,
                     trust_source=trust_source, for_training=for_training)
    if as_json:
        print_json(report)
        return
    click.echo(f"wrote {report['destination']} ({report['from']} -> {report['to']}, {report['seconds']:.2f} s)")
    if report.get("from_opset") is not None:
        click.echo(f"opset {report['from_opset']} -> {report['to_opset']}, IR {report['from_ir']} -> {report['to_ir']}, "
                   f"{report['folded']} constant nodes folded, {report['parameters']} trainable parameters")
    for name, dims in (report.get("fixed_dims") or {}).items():
        fixed = ", ".join(f"dim {k} = {v}" for k, v in dims.items())
        if report["from"] == "onnx":
            click.echo(f"note: torch.export fixed input '{name}' {fixed} (it is dynamic in the ONNX model; "
                       "choose the size with --dim)", err=True)
        else:
            click.echo(f"note: input '{name}' has {fixed} in the source program, so also in the ONNX model; "
                       "export with dynamic_shapes=({0: torch.export.Dim('batch')},) for a dynamic batch", err=True)
    if report.get("for_training"):
        click.echo(f"for training: every parameter kept ({report.get('parameters', 0)} trainable initialisers, "
                   "nothing folded)")
    if report["verified"] is None:
        click.echo("not verified (--no-verify)")
    else:
        engines = report["verified_with"]
        click.echo(f"verified: largest difference {report['max_abs_diff']:.3g} "
                   f"({engines['source']} vs {engines['result']}, tolerance {report['tolerance']:g})")
