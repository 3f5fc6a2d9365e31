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
            "generate": "generate", "bundle": "bundle", "samples": "samples", "gradcheck": "gradcheck"}


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
        from onnxforge.cli._suggest import short_summary

        names = self.list_commands(ctx)
        room = max(30, formatter.width - formatter.current_indent - max(map(len, names)) - 4)
        rows = [(name, short_summary(_summary(COMMANDS[name]) if name in COMMANDS
                                     else self.commands[name].get_short_help_str(limit=room), room))
                for name in names]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def resolve_command(self, ctx, args):
        try:
            return super().resolve_command(ctx, args)
        except click.UsageError as exc:
            from onnxforge.cli._suggest import closest

            meant = closest(args[0], self.list_commands(ctx)) if args and not args[0].startswith("-") else None
            if meant is None or "No such command" not in exc.message:
                raise
            raise click.UsageError(f"No such command '{args[0]}'. Did you mean '{meant}'?", ctx) from None

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except click.NoSuchOption as exc:
            from onnxforge.cli._suggest import closest_option

            command = exc.ctx.command if exc.ctx is not None else None
            options = [o for p in (command.params if command else ()) for o in (*p.opts, *p.secondary_opts)]
            meant = closest_option(exc.option_name, options)
            if meant is None:
                raise
            raise click.NoSuchOption(exc.option_name, f"No such option '{exc.option_name}'. Did you mean {meant}?",
                                     ctx=exc.ctx) from None
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
