"""``onnxforge``: build, train, evaluate, run, inspect and serve ONNX models."""

from __future__ import annotations

import ast
import importlib
import importlib.util

import click

from onnxforge.runtime.errors import OnnxforgeError

# command name -> the module (in onnxforge.cli) that defines it as ``command``. A module is
# imported only when its command runs, so ``onnxforge --help`` and each command start fast; the
# command list in --help takes each module's docstring ("``onnxforge NAME``: what it does").
COMMANDS = {"build": "build", "train": "train", "eval": "evaluate", "infer": "infer", "inspect": "inspect",
            "doctor": "doctor", "demo": "demo", "bench": "bench", "serve": "serve", "plugins": "plugins",
            "convert": "convert", "weights": "weights", "plot": "plot", "embeddings": "embeddings",
            "generate": "generate", "bundle": "bundle", "samples": "samples"}


def _summary(module: str) -> str:
    """The one-line summary of a command: its module's docstring after ``onnxforge NAME``:,
    read from the source without importing it."""
    spec = importlib.util.find_spec(f"onnxforge.cli.{module}")
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError(f"onnxforge.cli.{module}")
    with open(spec.origin, encoding="utf-8") as f:
        doc = ast.get_docstring(ast.parse(f.read())) or ""
    text = doc.split(":", 1)[1].strip() if doc.startswith("``onnxforge") else doc
    return text[:1].upper() + text[1:]


class ForgeGroup(click.Group):
    """The command group: commands imported on first use, and the one place that turns every
    :class:`OnnxforgeError` into one clear line on stderr and the exit code its class carries
    (2 for bad data or inputs, 1 otherwise)."""

    def list_commands(self, ctx) -> list[str]:
        return sorted({*COMMANDS, *self.commands})

    def get_command(self, ctx, name: str):
        if name in self.commands or name not in COMMANDS:  # one added in code, or none
            return super().get_command(ctx, name)
        return importlib.import_module(f"onnxforge.cli.{COMMANDS[name]}").command

    def format_commands(self, ctx, formatter) -> None:
        rows = [(name, _summary(COMMANDS[name]) if name in COMMANDS else self.commands[name].get_short_help_str())
                for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

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


def main() -> None:
    cli(prog_name="onnxforge")


if __name__ == "__main__":  # pragma: no cover
    main()
