"""The Run folder: the unit every command shares.

A run folder holds ``config.json`` (everything needed to rebuild the model and its inputs),
the model weights, ``split.npz``, ``scaler.npz``, ``history.json``, ``metrics.json`` and PNGs.
"""

from __future__ import annotations

import platform
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from mapscope.errors import RunError
from mapscope.io import read_json, write_json

RUN_KINDS = ("cnn", "mlp", "kmeans")


def versions() -> dict[str, str]:
    out = {"python": sys.version.split()[0], "platform": platform.platform()}
    for package in ("mapscope", "numpy", "torch", "scikit-learn", "matplotlib"):
        try:
            out[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            out[package] = "not installed"
    return out


def create_run(out: str | Path, config: dict[str, Any]) -> Path:
    run_dir = Path(out)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json(run_dir / "config.json", {**config, "versions": versions()})
    return run_dir


def read_config(run_dir: str | Path, kind: str | None = None) -> dict[str, Any]:
    path = Path(run_dir) / "config.json"
    if not path.is_file():
        raise RunError(
            f"{run_dir} is not a mapscope run folder (no config.json). Pass the --out folder of "
            "`mapscope cnn train`, `mapscope mlp train` or `mapscope kmeans fit`."
        )
    try:
        config = read_json(path)
    except ValueError as exc:
        raise RunError(f"{path}: not valid JSON ({exc}).") from exc
    if kind is not None and config.get("kind") != kind:
        raise RunError(
            f"{run_dir} holds a {config.get('kind')!r} run; this command needs a {kind!r} run."
        )
    return config


def write_metrics(run_dir: str | Path, metrics: dict[str, Any]) -> Path:
    return write_json(Path(run_dir) / "metrics.json", {**metrics, "versions": versions()})


def provenance(checksums: dict[str, str] | None = None, **settings: Any) -> dict[str, Any]:
    """What every JSON output carries so that a result can be traced and reproduced."""
    return {"settings": settings, "versions": versions(), "data_checksums": checksums or {}}
