"""What every run folder shares, whatever its kind: config.json with versions, metrics.json, the
provenance block that every JSON output carries, and how a run folder is written as a transaction.

A new run is built in a hidden sibling folder (``runs/.cnn.new-PID``) and swapped in whole when
it holds a usable model (``RunWriter.publish``), so an existing run is never half-replaced and an
interrupted first epoch leaves nothing behind. Writers hold the run's lock (``runlock.py``).

Each kind's own files (weights, checkpoints, histories) are written by that kind's ``saved``
module (``cnn/saved.py``, ``mlp/saved.py``, ``cluster/saved.py``); reading a run back goes
through ``mapscope.runs.Run``, which validates ``config.json`` once.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import platform
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from mapscope.errors import ConfigError, RunError
from mapscope.io import read_json, write_json
from mapscope.runs.lock import locked
from mapscope.schema import fields_of

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


def create_run(run_dir: str | Path, config: dict[str, Any]) -> Path:
    """Write ``config.json`` (with library versions) into the (staging) run folder ``run_dir``."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json(run_dir / CONFIG, {**config, "versions": versions()})
    return run_dir


def check_out_folder(out: str | Path | None, option: str = "--out") -> Path:
    """A folder the user asked us to write into: not empty as a name, not a file, and not below
    one; the message names the option."""
    if out is None or str(out).strip() == "":
        raise ConfigError(f"{option} is empty; pass a folder like {option} runs/my_run.")
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{option} {path} is a file, not a folder; pass a folder path.")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise ConfigError(
                    f"{option} {path} lies below the file {parent}; pass a folder path."
                )
            if not os.access(parent, os.W_OK | os.X_OK):
                raise ConfigError(
                    f"{option} {path}: the folder {parent} is not writable; pick a folder of yours."
                )
            break
    return path


@dataclass
class RunWriter:
    """Where a writer puts a run's files: ``folder`` is the staging folder until ``publish``
    swaps it in as ``target``, and ``target`` itself after that (or when resuming)."""

    target: Path
    folder: Path

    @property
    def published(self) -> bool:
        return self.folder == self.target

    def publish(self) -> None:
        """Swap the finished staging folder in for ``target``, in one step where the system
        can (Linux ``renameat2(RENAME_EXCHANGE)``), else in two renames; the old run is deleted
        only once the new one is in place."""
        if self.published:
            return
        staging = self.folder
        if self.target.exists():
            if not _exchange(staging, self.target):
                old = self.target.parent / f".{self.target.name}.old-{os.getpid()}"
                os.rename(self.target, old)
                os.rename(staging, self.target)
                staging = old
            shutil.rmtree(staging)
        else:
            os.rename(staging, self.target)
        self.folder = self.target


def is_run(folder: Path) -> bool:
    return (folder / CONFIG).is_file()


@contextlib.contextmanager
def writing(out: str | Path, overwrite: bool = False, resume: bool = False) -> Iterator[RunWriter]:
    """Hold the run folder ``out`` for writing (see the module docstring).

    A new run goes to a staging folder that the caller publishes when it holds a usable model
    (at the latest when the block ends); an exception before that deletes the staging folder and
    leaves ``out`` as it was. ``overwrite`` allows replacing an existing run; ``resume`` writes
    into the existing run itself (a CNN run commits each epoch atomically, see ``cnn/saved.py``).
    """
    target = _run_target(out)
    with locked(target):
        _recover(target)
        if resume:
            if not is_run(target):
                raise RunError(f"{target} is not a run folder to resume (no {CONFIG}).")
            yield RunWriter(target, target)
            return
        _check_replaceable(target, overwrite)
        staging = target.parent / f".{target.name}.new-{os.getpid()}"
        try:
            staging.mkdir()
        except OSError as exc:
            raise RunError(f"cannot create {staging} ({exc.strerror}).") from exc
        writer = RunWriter(target, staging)
        try:
            yield writer
            writer.publish()
        finally:
            if not writer.published:
                shutil.rmtree(staging, ignore_errors=True)


def check_new_run(out: str | Path, overwrite: bool = False) -> Path:
    """Fail fast, before any work, where ``writing(out, overwrite)`` would refuse: a bad path,
    an existing run without ``overwrite``, a folder of other files, a run being written."""
    target = _run_target(out)
    _check_replaceable(target, overwrite)
    if target.parent.exists():
        with locked(target):
            pass
    return target


def _run_target(out: str | Path | None) -> Path:
    """A run folder needs a name of its own: not empty, not '.' or '..' (the command line
    turns an empty --out into '.', which would fill the current folder with a run)."""
    target = check_out_folder(out)
    if target.name in ("", ".."):
        raise ConfigError(
            f"--out is empty or {str(out)!r}; a run needs a folder of its own, like --out runs/my_run."
        )
    return target


def _check_replaceable(target: Path, overwrite: bool) -> None:
    if not (target.is_dir() and any(target.iterdir())):
        return
    if not is_run(target):
        raise RunError(
            f"--out {target} holds files that are not a mapscope run; choose a new or "
            "empty folder (--overwrite replaces only runs)."
        )
    if not overwrite:
        raise RunError(
            f"--out {target} already holds a {_kind_of(target)} run; pass --overwrite to "
            "replace it, continue it with --resume (CNN), or choose another --out."
        )


def _kind_of(folder: Path) -> str:
    try:
        return repr(read_json(folder / CONFIG).get("kind"))
    except (ValueError, OSError, AttributeError):
        return "damaged"


def _recover(target: Path) -> None:
    """Clean up after a writer that was killed: we hold the lock, so every staging folder of
    this name is a leftover; an old run moved aside but not yet deleted goes back if nothing
    took its place."""
    for leftover in target.parent.glob(f".{target.name}.new-*"):
        shutil.rmtree(leftover, ignore_errors=True)
    for old in target.parent.glob(f".{target.name}.old-*"):
        if not target.exists():
            os.rename(old, target)
        else:
            shutil.rmtree(old, ignore_errors=True)
    if target.is_dir():  # temporary files of atomic writes cut short by SIGKILL
        for tmp in target.glob(".*.tmp"):
            tmp.unlink(missing_ok=True)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (Linux 3.15+); False where the system cannot."""
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is None:
        return False
    at_fdcwd, rename_exchange = -100, 2
    done = renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange)
    return done == 0


def read_config(run_dir: str | Path, kind: str | None = None) -> dict[str, Any]:
    """A run folder's ``config.json`` as a dict, of the kind ``kind`` if one is asked for;
    ``Run.open`` checks the rest."""
    path = Path(run_dir) / CONFIG
    if not path.is_file():
        raise RunError(
            f"{run_dir} is not a mapscope run folder (no {CONFIG}). Pass the --out folder of "
            "`mapscope cnn train`, `mlp train`, `kmeans fit` or `ae train`."
        )
    try:
        config = read_json(path)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RunError(f"{path}: not valid JSON ({exc}).") from exc
    if not isinstance(config, dict):
        raise RunError(f"{path}: expected a JSON object, got {type(config).__name__}.")
    found = config.get("kind")
    if kind is not None and found != kind:
        raise RunError(
            f"{run_dir} holds a {found!r} run; this command needs a run of kind {kind!r}."
        )
    return config


def require_tables(config: dict[str, Any], keys: tuple[str, ...], kind: str, source: str) -> None:
    """Each of ``keys`` must be a table (JSON object) in a run's config.json."""
    missing = [key for key in keys if not isinstance(config.get(key), dict)]
    if missing:
        raise RunError(f"{source}: a {kind} run needs the table(s) {missing} in {CONFIG}.")


def write_metrics(run_dir: str | Path, metrics: dict[str, Any]) -> Path:
    return write_json(Path(run_dir) / METRICS, {**metrics, "versions": versions()})


@dataclass(frozen=True)
class RunMetrics:
    """The schema of the entries of ``metrics.json`` that other code reads (a sweep's table, a
    run's card); each kind adds its own entries beside them."""

    epochs: int | None = None
    test_accuracy: float | None = None
    train_accuracy: float | None = None
    test_loss: float | None = None
    train_loss: float | None = None
    constant_loss: float | None = None  # the test loss of the best guess that ignores the input
    train_seconds: float | None = None
    seed: int | None = None
    n_train: int | None = None
    n_test: int | None = None
    precision: str | None = None
    threads: int | None = None


def read_metrics(path: str | Path) -> dict[str, Any]:
    """A run's ``metrics.json``, its shared entries checked against ``RunMetrics``."""
    try:
        metrics = read_json(path)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RunError(f"{path}: not valid JSON ({exc}).") from None
    fields_of(RunMetrics, metrics, str(path), ignore=None)
    return metrics


def provenance(checksums: dict[str, str] | None = None, **settings: Any) -> dict[str, Any]:
    """What every JSON output carries so that a result can be traced and reproduced."""
    return {"settings": settings, "versions": versions(), "data_checksums": checksums or {}}
