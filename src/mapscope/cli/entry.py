"""The ``mapscope`` console script: the background compile started first, then the command.

On an install whose CPU training kernels are not compiled yet (a plain ``pip install``), the
command starts their compile in the background (``cnn/background.py``) before it imports the
command line (torch and the rest: about 2 s) and sets its work up (reading the data: about 2 s
more for a training), so the compile runs beside both. A first ``mapscope cnn train`` of the
default network then waits for what is left of it, and counts its cores once it is done; a
training of another network, precision or device, a sweep, or an autoencoder or MLP training
starts nothing (the compile would hold a core the training wants, for kernels it may not use).

This module imports neither torch nor the command line before the compile has started.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

# `cnn train` options that make it train other kernels than a default training's (the default
# network on the CPU, in the precision ``auto`` picks), or a run that may be another network
OTHER_KERNELS = ("--config", "--precision", "--device", "--resume", "--init-from")
TRAININGS = {("ae", "train"), ("mlp", "train"), ("sweep",)}


def compiles_ahead(args: Sequence[str]) -> bool:
    """Whether the command ``args`` (the words after ``mapscope``) starts the background
    compile: every command but help, the version, sweeps, autoencoder and MLP trainings, and a
    CNN training whose options name other kernels than a default training's."""
    words = [a for a in args if not a.startswith("-")]
    if not words or any(a in ("--help", "-h", "--version") for a in args):
        return False
    if tuple(words[:1]) in TRAININGS or tuple(words[:2]) in TRAININGS:
        return False
    if tuple(words[:2]) == ("cnn", "train"):
        return not any(a.split("=")[0] in OTHER_KERNELS for a in args)
    return True


def start_compile() -> None:
    """Start the background compile where it is not done, running or turned off, and say so."""
    from mapscope.cnn import background

    log = background.start()
    if log is not None:
        print(
            "compiling the CPU training kernels in the background, once for this install "
            f"(log: {log}; {background.ENV}=0 turns this off)",
            file=sys.stderr,
            flush=True,
        )


def run(argv: list[str] | None = None) -> None:
    """Console entry point (``mapscope``): ``cli.main.run`` after the background compile."""
    if compiles_ahead(sys.argv[1:] if argv is None else argv):
        start_compile()
    from mapscope.cli.main import run as run_command

    run_command(argv)
