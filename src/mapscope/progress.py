"""Showing that long work goes on: a bar in a terminal, a line per stage in a log.

Every step that can take more than a couple of seconds goes through ``bar`` (a loop) or
``stage`` (one call, such as a scikit-learn fit). In a terminal a bar moves and a finished
stage leaves one line; when the output goes to a file or a pipe, bars stay silent (tqdm's own
choice) and every stage writes a line when it starts and one when it ends, with its time.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

from tqdm.auto import tqdm

Item = TypeVar("Item")


def bar(
    iterable: Iterable[Item], desc: str, total: int | None = None, unit: str = "it"
) -> Iterator[Item]:
    """The items of ``iterable`` with a bar in a terminal, a start and an end line in a log."""
    if sys.stdout.isatty() or sys.stderr.isatty():
        yield from tqdm(iterable, desc=desc, total=total, unit=unit, leave=False, disable=None)
        return
    began = time.perf_counter()
    tqdm.write(f"{desc} ...", file=sys.stdout)
    try:
        yield from iterable
    except GeneratorExit:  # the caller stopped early (an OIP search converged): done as well
        _done(desc, began)
        raise
    _done(desc, began)


@contextlib.contextmanager
def stage(what: str) -> Iterator[None]:
    began = time.perf_counter()
    if not sys.stdout.isatty():
        tqdm.write(f"{what} ...", file=sys.stdout)
    yield
    _done(what, began)


def _done(what: str, began: float) -> None:
    tqdm.write(f"{what}: done in {time.perf_counter() - began:.1f} s", file=sys.stdout)
