"""``onnxforge``: build, train, evaluate, run, inspect and serve ONNX models."""

from __future__ import annotations

import importlib
import sys

import click

from onnxforge.runtime.errors import OnnxforgeError

# Each module defines one click command (or group) called ``command``.
COMMAND_MODULES = ["build", "train", "evaluate", "infer", "inspect", "doctor", "demo", "bench", "serve", "plugins", "convert", "weights"]


class ForgeGroup(click.Group):
    """Turns every :class:`OnnxforgeError` into one clear line on stderr and its exit code (2 for
    bad data or inputs, 1 otherwise)."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except OnnxforgeError as exc:
            click.echo(f"Error: {exc}", err=True)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("Interrupted; the last completed epoch's checkpoint is kept.", err=True)
            ctx.exit(130)


@click.group(cls=ForgeGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="onnxforge")
def cli() -> None:
    """onnxforge builds standard ONNX networks, trains them on this machine with ONNX Runtime,
    evaluates them, runs them and serves them. Run a command with --help to learn more."""


for _name in COMMAND_MODULES:
    _module = importlib.import_module(f"onnxforge.cli.{_name}")
    cli.add_command(_module.command)


def main() -> None:
    cli(prog_name="onnxforge")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
