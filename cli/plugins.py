"""``onnxforge plugins``: the custom ops that installed plugins provide."""

from __future__ import annotations

import click

from onnxforge.cli._common import print_json
from onnxforge import plugins


@click.group("plugins")
def command() -> None:
    """List and describe the custom ops that plugins provide (the built-in pack, and packages
    installed with an `onnxforge.plugins` entry point)."""


def _row(op) -> dict:
    return {"name": op.name, "domain": op.domain, "version": op.version, "plugin": plugins.plugin_of(op),
            "implementations": op.kinds, "trainable": op.trainable, "activation": bool(op.activation)}


@command.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the plugins and their ops as one JSON object.")
def list_command(as_json):
    """List every op with its domain, plugin, kinds of implementation and whether it trains."""
    rows = [_row(op) for op in plugins.list_ops()]
    if as_json:
        print_json({"plugins": plugins.installed_plugins(), "ops": rows, "problems": plugins.problems()})
        return
    header = ("op", "domain", "plugin", "implementations", "trainable")
    table = [(r["name"], r["domain"], r["plugin"], ",".join(r["implementations"]), "yes" if r["trainable"] else "no")
             for r in rows]
    widths = [max(len(str(x)) for x in col) for col in zip(header, *table)]
    for line in [header, *table]:
        click.echo("  ".join(str(x).ljust(w) for x, w in zip(line, widths)).rstrip())
    for problem in plugins.problems():
        click.echo(f"problem: {problem}", err=True)


@command.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print the declaration as one JSON object.")
def show_command(name, as_json):
    """Describe the op NAME (its short name, case-insensitive, or DOMAIN.Name): inputs, outputs,
    attributes, implementations, whether it trains, and its function body."""
    op = plugins.find_op(name)
    info = {**op.describe(), "plugin": plugins.plugin_of(op)}
    if as_json:
        print_json(info)
        return
    ports = lambda ps: ", ".join(f"{p['name']}: {p['type']}" for p in ps)  # noqa: E731
    click.echo(f"{op.qualified_name} (version {op.version}, plugin {info['plugin']})")
    if op.doc:
        click.echo(f"  {op.doc}")
    click.echo(f"  inputs:          {ports(info['inputs'])}")
    click.echo(f"  outputs:         {ports(info['outputs'])}")
    if op.attributes:
        click.echo(f"  attributes:      {', '.join(f'{k}={v!r}' for k, v in op.attributes.items())}")
    click.echo(f"  implementations: {', '.join(op.kinds)}")
    click.echo(f"  trainable:       {'yes' if op.trainable else 'no (inference only)'}")
    click.echo(f"  activation:      {'yes' if op.activation else 'no'}")
    if "library" in info:
        click.echo(f"  library:         {info['library']}")
    for i, line in enumerate(info.get("body", [])):
        click.echo(f"  {'body:' if i == 0 else '':16} {line}")
