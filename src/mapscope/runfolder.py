"""What every run folder shares, whatever its kind: config.json with versions, metrics.json, and
the provenance block that every JSON output carries.

Each kind's own files (weights, checkpoints, histories) are written by that kind's ``saved``
module (``cnn/saved.py``, ``mlp/saved.py``, ``cluster/saved.py``); reading a run back goes
through ``mapscope.runs.Run``, which validates ``config.json`` once.
"""

from __future__ import annotations

import platform
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from mapscope.errors import RunError
from mapscope.io import read_json, write_json

CONFIG = "config.json"
METRICS = "metrics.json"
# the files of every run kind, by role; each kind's FILES adds its own (see runs/registry.py)
COMMON_FILES = {"config": CONFIG, "split": "split.npz", "scaler": "scaler.npz", "metrics": METRICS}


def versions() -> dict[str, str]:
    out = {"python": sys.version.split()[0], "platform": platform.platform()}
    for package in ("mapscope", "numpy", "torch", "scikit-learn", "matplotlib"):
        try:
            out[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            out[package] = "not installed"
    return out


def create_run(out: str | Path, config: dict[str, Any]) -> Path:
    """Write ``config.json`` (with library versions) into the run folder ``out``."""
    run_dir = Path(out)
    if str(out) == "":
        raise RunError("the run folder name is empty; pass a folder like --out runs/my_run.")
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json(run_dir / CONFIG, {**config, "versions": versions()})
    return run_dir


def read_config(run_dir: str | Path, kind: str | None = None) -> dict[str, Any]:
    """A run folder's ``config.json`` as a dict, of the kind ``kind`` if one is asked for;
    ``Run.open`` checks the rest."""
    path = Path(run_dir) / CONFIG
    if not path.is_file():
        raise RunError(
            f"{run_dir} is not a mapscope run folder (no {CONFIG}). Pass the --out folder of "
            "`mapscope cnn train`, `mapscope mlp train` or `mapscope kmeans fit`."
        )
    try:
        config = read_json(path)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RunError(f"{path}: not valid JSON ({exc}).") from exc
    if not isinstance(config, dict):
        raise RunError(f"{path}: expected a JSON object, got {type(config).__name__}.")
    found = config.get("kind")
    if kind is not None and found != kind:
        raise RunError(f"{run_dir} holds a {found!r} run; this command needs a {kind!r} run.")
    return config


def require_tables(config: dict[str, Any], keys: tuple[str, ...], kind: str, source: str) -> None:
    """Each of ``keys`` must be a table (JSON object) in a run's config.json."""
    missing = [key for key in keys if not isinstance(config.get(key), dict)]
    if missing:
        raise RunError(f"{source}: a {kind} run needs the table(s) {missing} in {CONFIG}.")


def write_metrics(run_dir: str | Path, metrics: dict[str, Any]) -> Path:
    return write_json(Path(run_dir) / METRICS, {**metrics, "versions": versions()})


def provenance(checksums: dict[str, str] | None = None, **settings: Any) -> dict[str, Any]:
    """What every JSON output carries so that a result can be traced and reproduced."""
    return {"settings": settings, "versions": versions(), "data_checksums": checksums or {}}
