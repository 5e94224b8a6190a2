"""The structure of every file mapscope reads, declared once and checked where the file is read.

A file format is declared as a dataclass (the settings classes, ``EpochRecord``,
``CheckpointState``, ...): its fields are the keys, their type hints the types. ``fields_of``
checks a parsed file (JSON, TOML, a checkpoint dictionary) against such a class before anything
else touches it: a list where a table belongs, a missing or unknown key, a string where a number
belongs, a whole number too large for any count, a number that is not finite. The error names
the file, the field and what was expected, and is the caller's kind of error (``RunError`` for a
run's files, ``ConfigError`` for a user's settings). After that boundary, code may trust the
structure; the values' ranges are each settings class's own ``validate()``.
"""

from __future__ import annotations

import dataclasses
import math
import os
import types
import typing
from typing import Any, Literal

from mapscope.checks import LARGEST_INT, LARGEST_SEED
from mapscope.errors import MapscopeError, RunError

__all__ = [
    "LARGEST_INT",
    "LARGEST_SEED",
    "check_size",
    "describe",
    "fields_of",
    "memory_budget",
    "read_as",
    "value_of",
]

_NAMES = {int: "a whole number", float: "a number", str: "text", bool: "true or false"}


def describe(hint: Any) -> str:
    """What a type hint asks for, in words."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return "any value"
    if hint in _NAMES:
        return _NAMES[hint]
    if hint is type(None):
        return "null"
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin in (types.UnionType, typing.Union):
        return " or ".join(describe(a) for a in args)
    if origin in (list, tuple):
        return f"a list of {describe(args[0])}" if args else "a list"
    if origin is dict or hint is dict:
        return f"a table of {describe(args[1])}" if args else "a table"
    if dataclasses.is_dataclass(hint):
        return "a table"
    return getattr(hint, "__name__", str(hint))


def shown(value: Any) -> str:
    """A value as an error message shows it: short, with its JSON type."""
    kind = {dict: "a table", list: "a list", str: "text", bool: "a boolean"}.get(type(value))
    if value is None:
        return "null"
    if kind in ("a table", "a list"):
        return f"{kind} of {len(value)}"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def value_of(
    hint: Any, value: Any, where: str, source: str, error: type[MapscopeError] = RunError
) -> Any:
    """``value`` checked against ``hint`` (ints where floats are asked, lists where tuples are
    asked, nested dataclasses as tables); one ``error`` naming ``source`` and ``where``."""

    def wrong(expected: str | None = None) -> MapscopeError:
        return error(f"{source}: {where} must be {expected or describe(hint)}, got {shown(value)}.")

    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return value
    if origin in (types.UnionType, typing.Union):
        if value is None and type(None) in args:
            return None
        for arg in (a for a in args if a is not type(None)):
            try:
                return value_of(arg, value, where, source, error)
            except MapscopeError:
                continue
        raise wrong()
    if origin is Literal:
        if value not in args or isinstance(value, bool) != any(isinstance(a, bool) for a in args):
            raise wrong()
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise wrong()
        return value
    if hint is int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise wrong()
        if abs(value) > LARGEST_INT and not where.endswith("seed"):
            raise wrong(f"a whole number of at most {LARGEST_INT}")
        return value
    if hint is float:
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise wrong()
        if isinstance(value, int) and abs(value) > 2**1000 or not math.isfinite(value):
            raise wrong("a finite number")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise wrong()
        return value
    if origin in (list, tuple):
        if not isinstance(value, list | tuple):
            raise wrong()
        item = args[0] if args else Any
        items = [value_of(item, v, f"{where}[{i}]", source, error) for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise wrong()
        item = args[1] if args else Any
        return {k: value_of(item, v, f"{where}.{k}", source, error) for k, v in value.items()}
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return fields_of(hint, value, source, where, error)
    raise TypeError(f"schema: no rule for the type {hint!r}")  # a bug in a declaration


def fields_of(
    cls: type,
    value: Any,
    source: str,
    where: str = "",
    error: type[MapscopeError] = RunError,
    ignore: frozenset[str] | None = frozenset(),
) -> dict[str, Any]:
    """A table read from ``source`` checked against the dataclass ``cls``: every key known (but
    those in ``ignore``; None: any other key, for formats that are not mapscope's own), every
    field without a default present, every value of its field's type. Returns the checked
    values by field name, ready for ``cls(**...)``."""
    place = f"{where} " if where else ""
    if not isinstance(value, dict):
        raise error(f"{source}: {place or 'the file '}must be a table, got {shown(value)}.")
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = [k for k in value if k not in known and ignore is not None and k not in ignore]
    if unknown:
        name = f"{where}.{unknown[0]}" if where else unknown[0]
        raise error(f"{source}: unknown field {name!r}; the fields are {', '.join(known)}.")
    checked = {}
    for name, field in known.items():
        inside = f"{where}.{name}" if where else name
        if name not in value:
            if (
                field.default is dataclasses.MISSING
                and field.default_factory is dataclasses.MISSING
            ):
                raise error(f"{source}: {inside} is missing ({describe(hints[name])} expected).")
            continue
        checked[name] = value_of(hints[name], value[name], inside, source, error)
    return checked


def read_as(
    cls: type,
    value: Any,
    source: str,
    where: str = "",
    error: type[MapscopeError] = RunError,
    ignore: frozenset[str] | None = frozenset(),
) -> Any:
    """``cls`` built from a table read from ``source``, after ``fields_of`` checked it."""
    return cls(**fields_of(cls, value, source, where, error, ignore))


def memory_budget() -> int:
    """Bytes one thing read from a file may ask for: half the memory this machine has free now
    (the rest is for the copies that reading makes, the system and the user's other work);
    half its physical memory where the free memory cannot be read, 8 GiB where neither can."""
    try:
        with open("/proc/meminfo", encoding="ascii") as info:
            for line in info:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024 // 2
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2
    except (AttributeError, ValueError, OSError):
        return 8 * 2**30


def gib(nbytes: float) -> str:
    return f"{nbytes / 2**30:,.1f} GiB" if nbytes >= 2**30 else f"{nbytes / 2**20:.1f} MiB"


def check_size(
    nbytes: float, what: str, source: str, error: type[MapscopeError] = RunError
) -> None:
    """Refuse, before anything is allocated, what would need more than ``memory_budget()``:
    a shape read from a file or a spec is asked whether it is sane before the allocator is."""
    budget = memory_budget()
    if nbytes > budget:
        raise error(
            f"{source}: {what} would need {gib(nbytes)}, more than the {gib(budget)} this "
            "machine can give it (half its free memory); make it smaller."
        )
