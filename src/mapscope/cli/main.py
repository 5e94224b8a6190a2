"""The `mapscope` command: assembles the command groups and turns user errors into exit code 2."""

from __future__ import annotations

import sys

import typer

from mapscope import __version__
from mapscope.cli import cnn, data, evaluate, inspect, kmeans, mlp
from mapscope.errors import MapscopeError

app = typer.Typer(
    help="Train small classifiers on MNIST-like data and look inside them.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(data.app, name="data")
app.add_typer(cnn.app, name="cnn")
app.add_typer(mlp.app, name="mlp")
app.command()(evaluate.evaluate)
app.command()(inspect.activations)
app.command()(inspect.compare)
app.command()(inspect.oip)
app.add_typer(kmeans.app, name="kmeans")
app.command()(kmeans.pca)


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


def run() -> None:
    """Console entry point: user errors print one clear message and exit 2, no traceback."""
    try:
        app()
    except MapscopeError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)
