"""The `mapscope` command: assembles the command groups and turns user errors into exit code 2."""

from __future__ import annotations

import functools
import sys
from inspect import cleandoc

import typer
from typer.core import TyperGroup

from mapscope import __version__
from mapscope.cli import (
    ae,
    atlas,
    cnn,
    data,
    evaluate,
    importing,
    inspect,
    kmeans,
    live,
    match,
    mlp,
    sweep,
)
from mapscope.cli.common import checked
from mapscope.errors import MapscopeError

# a bad, missing or unknown option; typer carries its own copy of click, so found by name
UsageError = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError")

app = typer.Typer(
    help="Train small classifiers on MNIST-like data and look inside them.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(data.app, name="data")
app.add_typer(cnn.app, name="cnn")
app.add_typer(mlp.app, name="mlp")
app.add_typer(ae.app, name="ae")
app.add_typer(importing.app, name="import")
app.command()(evaluate.evaluate)
app.command()(inspect.activations)
app.command()(inspect.compare)
app.command()(inspect.oip)
app.command()(inspect.summary)
app.add_typer(kmeans.app, name="kmeans")
app.command()(kmeans.pca)
app.command()(sweep.sweep)
app.command()(match.match)
app.command()(atlas.atlas)
app.command()(atlas.attribute)
app.command()(live.live)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"mapscope {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """mapscope: every command writes PNGs next to machine-readable JSON and says where."""


@functools.cache
def command() -> TyperGroup:
    """The click command tree, every command's options first checked by ``check_options``;
    built once per process (typer reads every command's signature to build it) and reused by
    every ``run`` there, as click's own test runner reuses a command."""
    group = typer.main.get_command(app)
    _check_every_command(group)
    return group


def _check_every_command(node) -> None:
    for child in getattr(node, "commands", {}).values():
        _check_every_command(child)
        child.short_help = child.short_help or one_line(child.help)
    if getattr(node, "callback", None) is not None and not getattr(node, "commands", None):
        node.callback = checked(node.callback, {p.name: p.opts[0] for p in node.params if p.opts})


def one_line(help_text: str | None) -> str | None:
    """The first paragraph of a command's help on one line, for the list of commands: typer's
    list keeps a docstring's line breaks, so a sentence wrapped in the source broke in the
    middle of ``mapscope --help`` ("... output shape," / "parameters, ...")."""
    if not help_text:
        return help_text
    return " ".join(cleandoc(help_text).split("\n\n")[0].split())


def run(argv: list[str] | None = None) -> None:
    """Console entry point: every user error (a bad option, a damaged file, an unwritable
    folder) prints one line ``error: ...`` and exits 2, never a traceback."""
    try:
        code = command().main(argv, prog_name="mapscope", standalone_mode=False)
    except UsageError as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":  # the help was printed: nothing to add
            sys.exit(2)
        _fail(exc.format_message() + _sweep_hint(exc))
    except MapscopeError as exc:
        _fail(str(exc))
    except OSError as exc:  # the system refused a read or write we could not check beforehand
        where = f" {exc.filename}" if exc.filename else ""
        _fail(f"cannot use{where}: {exc.strerror or exc}.")
    except (KeyboardInterrupt, typer.Abort):
        typer.echo("interrupted.", err=True)
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)


def _sweep_hint(exc) -> str:
    """An option ``mapscope sweep`` does not know is most likely one for its runs (``--epochs``,
    as ``cnn train`` takes it), which a sweep takes as ``--set``: say so."""
    context, option = getattr(exc, "ctx", None), getattr(exc, "option_name", None)
    if type(exc).__name__ != "NoSuchOption" or context is None or not option:
        return ""
    if context.command.name != "sweep":
        return ""
    name = option.lstrip("-").replace("-", "_")
    return f"; a sweep gives its runs their options with --set, like --set {name}=VALUE"


def _fail(message: str) -> None:
    typer.echo("error: " + " ".join(message.split()), err=True)  # one line, always
    sys.exit(2)
