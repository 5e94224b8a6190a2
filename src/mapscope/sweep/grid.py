"""The points of a sweep: every combination of the seeds, one swept parameter and the axes of
a TOML grid, over fixed options. Each point is a name (its folder) and the options it trains
with; names hold only the options that vary, so ``--param l2 --values 0.1,0.8`` gives the
folders ``l2=0.1`` and ``l2=0.8``.

A grid file::

    [fixed]          # the same for every point
    epochs = 2
    max_train = 20000

    [grid]           # every combination of these lists
    lr = [0.001, 0.002]
    batch_size = [32, 64]

The command line wins over the file: ``--set lr=0.01`` holds the file's ``lr`` axis at one value,
and ``--param lr --values ...`` replaces its list.
"""

from __future__ import annotations

import itertools
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mapscope.errors import ConfigError
from mapscope.schema import fields_of
from mapscope.sweep.kinds import Kind, coerce, make_config


@dataclass(frozen=True)
class Point:
    name: str
    options: dict[str, Any]  # every option given (fixed and varied); the rest keep defaults
    varied: dict[str, Any]  # the options that differ between points


@dataclass(frozen=True)
class Grid:
    kind: Kind
    fixed: dict[str, Any]
    axes: dict[str, list[Any]]  # option -> values, in the order they vary (seed last)

    @property
    def varied_names(self) -> list[str]:
        return [name for name, values in self.axes.items() if len(values) > 1]

    def points(self) -> list[Point]:
        names = list(self.axes)
        points = []
        for combination in itertools.product(*(self.axes[n] for n in names)):
            chosen = dict(zip(names, combination, strict=True))
            varied = {n: chosen[n] for n in self.varied_names}
            label = "_".join(f"{n}={_text(v)}" for n, v in varied.items()) or "run"
            points.append(Point(label, {**self.fixed, **chosen}, varied))
        return points


def _text(value: Any) -> str:
    if isinstance(value, tuple):
        return "-".join(str(v) for v in value)
    return str(value)


@dataclass(frozen=True)
class GridFile:
    """The schema of a grid TOML file: options for every point, and lists to combine."""

    fixed: dict[str, Any] = field(default_factory=dict)
    grid: dict[str, list[Any]] = field(default_factory=dict)


def read_grid_file(path: str | Path) -> tuple[dict[str, Any], dict[str, list[Any]]]:
    """(fixed options, axes) of a grid TOML file; anything else in it is refused."""
    path = Path(path)
    try:
        table = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"--grid {path} does not exist.") from exc
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"--grid {path} is not a readable TOML file ({exc}).") from exc
    checked = fields_of(GridFile, table, f"--grid {path}", error=ConfigError)
    fixed, axes = checked.get("fixed", {}), checked.get("grid", {})
    for name, values in axes.items():
        if not values:
            raise ConfigError(
                f"--grid {path}: grid.{name} must be a non-empty list like [0.001, 0.002]."
            )
        if name in fixed:
            raise ConfigError(
                f"--grid {path}: {name} is both in [fixed] and in [grid]; keep it in one table."
            )
    return fixed, axes


def make_grid(
    kind: Kind,
    seeds: list[int] | None = None,
    param: str | None = None,
    values: list[Any] | None = None,
    grid_file: str | Path | None = None,
    fixed: dict[str, Any] | None = None,
) -> Grid:
    """Every option typed and every point's config checked before anything trains: a bad
    value is one ConfigError, not a failed point."""
    given_fixed, given_axes = ({}, {}) if grid_file is None else read_grid_file(grid_file)
    source = f"--grid {grid_file}"
    given_set = fixed or {}
    fixed_options = {n: coerce(kind, n, v, source) for n, v in given_fixed.items()}
    for name, value in given_set.items():
        fixed_options[name] = coerce(kind, name, value, "--set")
    # the command line over the file: --set holds an option the file varies at one value
    axes = {
        n: [coerce(kind, n, v, source) for v in vs]
        for n, vs in given_axes.items()
        if n not in given_set
    }
    if (param is None) != (values is None):
        raise ConfigError(
            "give --param and --values together (like --param lr --values 0.001,0.002)."
        )
    if param is not None:
        if not values:
            raise ConfigError("--values is empty; give at least one value, like --values 0.1,0.2.")
        axes.pop(param, None)  # the command line's values replace the file's list
        axes[param] = [coerce(kind, param, v, "--values") for v in values]
    if seeds is not None:
        if "seed" in axes:
            raise ConfigError("--seeds and a seed list in --grid/--param: give the seeds once.")
        if not seeds:
            raise ConfigError("--seeds is empty; give seeds like 0..4.")
        axes["seed"] = [coerce(kind, "seed", s, "--seeds") for s in seeds]
    for name in axes:
        if name in given_set:
            raise ConfigError(f"--set {name} is also swept by --param or --seeds; give it once.")
        fixed_options.pop(name, None)  # the file's [fixed] value that --param replaces
    for name, vs in axes.items():
        if len(set(map(_text, vs))) != len(vs):
            raise ConfigError(f"{name}: a value is given twice in {vs}.")
    result = Grid(kind, fixed_options, axes)
    for point in result.points():
        try:
            make_config(kind, point.options)
        except ConfigError as exc:
            raise ConfigError(f"point {point.name}: {exc}") from None
        except TypeError as exc:
            raise ConfigError(f"point {point.name}: {exc}.") from None
    return result
