"""What a sweep needs of each run kind: its training options, how one point trains, and the
number that sums a run up.

A point trains in a Dask worker process, so ``train_point`` takes only plain values (kind
name, folder, options).
"""

from __future__ import annotations

import dataclasses
import importlib
import types
import typing
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from typing import Any

from mapscope.errors import ConfigError
from mapscope.schema import LARGEST_INT, LARGEST_SEED


@dataclass(frozen=True)
class KMeansConfig:
    """The options of ``mapscope kmeans fit``: one KMeans classifier saved as a run."""

    dataset: str = "mnist"
    clusters: int = 100
    mapping: str = "majority"
    pca: int | None = None
    seed: int = 0

    def validate(self) -> KMeansConfig:
        problems = []
        if self.dataset not in ("mnist", "fashion-mnist", "wifi"):
            problems.append(f"dataset {self.dataset!r} unknown; use mnist, fashion-mnist or wifi")
        if self.clusters < 2:
            problems.append(f"clusters must be at least 2, got {self.clusters}")
        if self.mapping not in ("majority", "hungarian"):
            problems.append(f"mapping {self.mapping!r} unknown; use majority or hungarian")
        if self.pca is not None and self.pca < 1:
            problems.append(f"pca must be at least 1, got {self.pca}")
        if not 0 <= self.seed <= LARGEST_SEED:
            problems.append(f"seed must be in 0..{LARGEST_SEED}, got {self.seed}")
        if problems:
            raise ConfigError("; ".join(problems) + ".")
        return self


def _load(where: str) -> Any:
    """``module:name``, imported when first asked for: a sweep worker imports its own kind
    only (an MLP or KMeans worker never imports torch)."""
    module, _, name = where.partition(":")
    return getattr(importlib.import_module(module), name)


@dataclass(frozen=True)
class Kind:
    name: str
    config_at: str  # where its settings class lives, ``module:name``
    metric: str  # the number the sweep's table and plot are about
    higher_is_better: bool
    resumable: bool  # the run commits epochs, so an interrupted point continues
    trainer_at: str  # its training function, ``module:name``

    @property
    def config(self) -> type:
        return _load(self.config_at)

    @property
    def trainer(self):
        return _load(self.trainer_at)


KINDS = {
    "cnn": Kind(
        "cnn", "mapscope.training.config:TrainConfig", "test_accuracy", True, True,
        "mapscope.cnn.train:train",
    ),
    "mlp": Kind(
        "mlp", "mapscope.mlp.train:MLPConfig", "test_accuracy", True, False,
        "mapscope.mlp.train:train",
    ),
    "ae": Kind(
        "ae", "mapscope.ae.config:AETrainConfig", "test_loss", False, True,
        "mapscope.ae.train:train",
    ),
    "kmeans": Kind(
        "kmeans", "mapscope.sweep.kinds:KMeansConfig", "test_accuracy", True, False,
        "mapscope.sweep.kinds:train_kmeans",
    ),
}  # fmt: skip
# set by the sweep itself, never a point's option
RESERVED = {"threads", "device"}


def kind(name: str) -> Kind:
    if name not in KINDS:
        raise ConfigError(f"cannot sweep {name!r} runs; choose one of {', '.join(KINDS)}.")
    return KINDS[name]


def option_names(k: Kind) -> list[str]:
    return [f.name for f in dataclasses.fields(k.config) if f.name not in RESERVED]


def _base_type(hint: Any) -> type:
    """int for ``int`` and ``int | None``; the same for float, str, bool and tuples."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    return typing.get_origin(hint) or hint


def option_types(k: Kind) -> dict[str, type]:
    hints = typing.get_type_hints(k.config)
    return {name: _base_type(hints[name]) for name in option_names(k)}


def coerce(k: Kind, name: str, value: Any, source: str) -> Any:
    """``value`` (typed on the command line, or read from TOML) as the option's own type; a
    wrong name or type is one ConfigError naming where it came from."""
    types_ = option_types(k)
    if name not in types_:
        raise ConfigError(
            f"{source}: {k.name} runs have no option {name!r}; choose from {', '.join(types_)}."
        )
    wanted = types_[name]
    if value is None or (isinstance(value, str) and value.lower() == "none"):
        return None
    described = {int: "a whole number", float: "a number", bool: "true or false"}
    problem = ConfigError(
        f"{source}: {name} must be {described.get(wanted, 'text')}; got {value!r}."
    )
    try:
        if wanted is bool:
            if isinstance(value, bool):
                return value
            if str(value).lower() not in ("true", "false", "1", "0"):
                raise problem
            return str(value).lower() in ("true", "1")
        if wanted is int:
            number = int(value) if isinstance(value, int) else float(value)
            if not float(number).is_integer():
                raise ConfigError(f"{source}: {name} takes whole numbers; got {value}.")
            limit = LARGEST_SEED if name == "seed" else LARGEST_INT
            if abs(int(number)) > limit:
                raise ConfigError(f"{source}: {name} {value} is out of range (at most {limit}).")
            return int(number)
        if wanted is float:
            return float(value)
        if wanted is tuple:
            items = value.split(",") if isinstance(value, str) else value
            return tuple(int(v) for v in items)
        return str(value)
    except ConfigError:
        raise
    except (TypeError, ValueError, OverflowError) as exc:
        raise problem from exc


def make_config(k: Kind, options: dict[str, Any], threads: int | None = None):
    """The kind's validated config for one point (``threads`` where the kind takes it)."""
    fields = {f.name for f in dataclasses.fields(k.config)}
    extra = {"threads": threads} if "threads" in fields and threads is not None else {}
    if hasattr(k.config, "from_recipe"):  # a recipe fills the options the point leaves out
        config = k.config.from_recipe(**options, **extra)
    else:
        config = k.config(**options, **extra)
    return config.validate()


def train_point(
    kind_name: str,
    out: str,
    options: dict[str, Any],
    data_root: str | None,
    threads: int | None,
    resume_epochs: int = 0,
    log: str | None = None,
) -> dict[str, Any]:
    """Train one point into the run folder ``out`` and return its metrics (runs in a worker);
    what the training prints goes to the file ``log``, not into the sweep's own output.

    ``resume_epochs`` > 0 continues an interrupted CNN or autoencoder run for that many epochs.
    BLAS threads are capped as well, for the kinds whose work is numpy and scikit-learn."""
    if log is None:
        return _train_point(kind_name, out, options, data_root, threads, resume_epochs)
    with open(log, "a", encoding="utf-8") as sink, redirect_stdout(sink), redirect_stderr(sink):
        return _train_point(kind_name, out, options, data_root, threads, resume_epochs)


def _train_point(kind_name, out, options, data_root, threads, resume_epochs) -> dict[str, Any]:
    from threadpoolctl import threadpool_limits

    k = kind(kind_name)
    config = make_config(k, options, threads)
    with threadpool_limits(limits=threads):
        if k.resumable:  # the kinds that commit epochs, and so can continue
            if resume_epochs:
                more = dataclasses.replace(config, epochs=resume_epochs)
                return k.trainer(out, more, resume=True, data_root=data_root)
            return k.trainer(out, config, data_root=data_root, overwrite=True)
        return k.trainer(out, config, data_root, overwrite=True)


def train_kmeans(out: str, config: KMeansConfig, data_root: str | None, overwrite: bool) -> dict:
    """One KMeans classifier fitted and saved as a run, as ``mapscope kmeans fit`` does."""
    from mapscope.cluster.saved import fit_run, write_run

    result = fit_run(
        config.dataset, config.clusters, config.mapping, config.pca, config.seed, data_root
    )
    write_run(result, out, overwrite=overwrite)
    return {"test_accuracy": result.test_accuracy, "train_seconds": result.seconds}
