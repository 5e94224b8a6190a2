"""The command-line reference as Markdown, generated from the Typer app itself (the site's
``cli.md`` is filled by ``docs/hooks.py`` when it is built), so the reference can never drift
from the options the commands take."""

from __future__ import annotations

import typer

from mapscope.cli.main import app


def _cell(text: object) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _command(name: str, command, level: int) -> list[str]:
    lines = [f"{'#' * level} `{name}`", ""]
    if command.help:
        lines += [" ".join(command.help.split()), ""]
    subcommands = getattr(command, "commands", None)
    if subcommands:
        lines += [f"```text\n{name} COMMAND [OPTIONS]\n```", ""]
        for sub in sorted(subcommands):
            lines += _command(f"{name} {sub}", subcommands[sub], min(level + 1, 6))
        return lines
    lines += [f"```text\n{name} [OPTIONS]\n```", ""]
    context = command.context_class(command, info_name=name)
    records = [p.get_help_record(context) for p in command.params if not p.hidden]
    records = [r for r in records if r is not None]
    if records:
        lines += ["| option | what it does |", "| --- | --- |"]
        lines += [f"| `{_cell(option)}` | {_cell(text)} |" for option, text in records]
        lines.append("")
    return lines


def markdown(level: int = 2) -> str:
    """Every command and group of ``mapscope``, with every option, as Markdown."""
    command = typer.main.get_command(app)
    lines: list[str] = []
    for name in sorted(command.commands):
        lines += _command(f"mapscope {name}", command.commands[name], level)
    return "\n".join(lines)
