"""What every command shares: parsing lists, reporting outputs, the error boundary."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Any, TypeVar

import typer

from mapscope.errors import ConfigError

DATA_DIR = typer.Option(
    None,
    "--data-dir",
    help="Folder with mnist/, fashion-mnist/, wifi/ (default: $MAPSCOPE_DATA, else ~/.cache/mapscope).",
)


def parse_ints(text: str, name: str) -> list[int]:
    try:
        return [int(v) for v in text.replace(" ", "").split(",") if v]
    except ValueError as exc:
        raise ConfigError(
            f"{name} must be comma-separated integers like 1,2,3; got {text!r}."
        ) from exc


def parse_floats(text: str, name: str) -> list[float]:
    try:
        return [float(v) for v in text.replace(" ", "").split(",") if v]
    except ValueError as exc:
        raise ConfigError(
            f"{name} must be comma-separated numbers like 0.1,0.2; got {text!r}."
        ) from exc


Config = TypeVar("Config")


def config_from(cls: type[Config], options: dict[str, Any], **overrides: Any) -> Config:
    """A config dataclass from a command's options, field by field by keyword: an option the
    config does not have is ignored, a field the command does not offer keeps its default."""
    names = {f.name for f in fields(cls)}
    chosen = {k: v for k, v in {**options, **overrides}.items() if k in names}
    config = cls(**chosen)
    return config.validate() if hasattr(config, "validate") else config


def wrote(*paths: str | Path) -> None:
    for path in paths:
        typer.echo(f"wrote {path}")


def parse_range(text: str, name: str) -> list[int]:
    """'2..12', '10..170/10' (inclusive, with step) or a comma list '4,5,6'."""
    text = text.replace(" ", "")
    if ".." in text:
        try:
            span, _, step = text.partition("/")
            low, high = (int(v) for v in span.split(".."))
            values = list(range(low, high + 1, int(step) if step else 1))
        except ValueError as exc:
            raise ConfigError(f"{name} must look like 2..12 or 10..170/10; got {text!r}.") from exc
        if not values:
            raise ConfigError(
                f"{name} {text!r} is empty; the first number must not exceed the second."
            )
        return values
    return parse_ints(text, name)
