"""Committing a network's training epochs as sets, for every run kind that trains by epochs
(the CNN and the autoencoder).

An epoch's files (weights, optimizer state, history, curves, metrics) are written into a fresh
folder ``epochs/NNNN/`` and only then does the pointer ``epoch.json`` (one small file, replaced
atomically) name that folder; the previous epoch's folder is deleted after. A crash at any
moment leaves the pointer on a complete epoch, so ``--resume`` always continues from a
consistent state. Runs written before epochs were committed as sets keep their files at the top
level; they are still read from there.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torch import nn

from mapscope.data.bundle import DataBundle
from mapscope.errors import RunError
from mapscope.history import EpochRecord
from mapscope.io import read_json, write_json
from mapscope.runs.folder import METRICS, create_run, write_metrics
from mapscope.schema import fields_of
from mapscope.weights import load_state, load_weights, save_state, save_weights

if TYPE_CHECKING:
    from matplotlib.figure import Figure

POINTER = "epoch.json"
INITIAL = "initial.safetensors"  # the weights before training (``cnn train --restart``)
EPOCHS = "epochs"
# the files of one finished epoch, in the folder that epoch.json points to
EPOCH_FILES = {
    "model": "model.safetensors",
    "checkpoint": "checkpoint.pt",
    "history": "history.json",
    "curves": "curves.png",
    "metrics": METRICS,
}


def start(
    run_dir: Path,
    kind: str,
    net_config: dict,
    train: dict,
    bundle: DataBundle,
    net: nn.Module,
    extra: dict | None = None,
) -> None:
    """A new run: its config (the network's spec under ``net``, plus any ``extra`` tables such
    as where an imported model came from), split, scaler and initial weights."""
    config = {"kind": kind, "net": net_config, "train": train, "data": bundle.config()}
    create_run(run_dir, {**config, **(extra or {})})
    bundle.save(run_dir)
    save_weights(net, run_dir / INITIAL)


def check_files(
    run_dir: Path,
    config: dict[str, Any],
    load_module: Callable[..., nn.Module],
) -> None:
    """Every file of the committed epoch: weights (names, shapes, dtypes, finite), initial
    weights, history and checkpoint; a damaged one is one RunError naming it."""
    load_module(run_dir, config)
    if (run_dir / INITIAL).exists():
        load_module(run_dir, config, "initial")
    check_history(run_dir)
    load_state(epoch_folder(run_dir) / EPOCH_FILES["checkpoint"])


def current_epoch(run_dir: Path) -> int | None:
    """The last committed epoch, from the pointer file; None before the first."""
    pointer = run_dir / POINTER
    if not pointer.exists():
        return None
    try:
        epoch = read_json(pointer).get("epoch")
    except (ValueError, OSError, AttributeError) as exc:
        raise RunError(
            f"{pointer}: damaged epoch pointer ({exc}); the run cannot be read."
        ) from exc
    if not isinstance(epoch, int) or isinstance(epoch, bool) or epoch < 1:
        raise RunError(f"{pointer}: 'epoch' must be a whole number >= 1, got {epoch!r}.")
    return epoch


def epoch_folder(run_dir: Path, epoch: int | None = None) -> Path:
    """The folder of ``epoch`` (default: the committed one)."""
    epoch = current_epoch(run_dir) if epoch is None else epoch
    return run_dir if epoch is None else run_dir / EPOCHS / f"{epoch:04d}"


def paths(run_dir: Path, files: dict[str, str]) -> dict[str, Path]:
    """Every file of the run by role: the kind's fixed ``files`` at the top, the epoch files
    resolved through the pointer."""
    folder = epoch_folder(run_dir)
    return {
        **{role: run_dir / name for role, name in files.items()},
        **{role: folder / name for role, name in EPOCH_FILES.items()},
    }


def check_history(run_dir: Path) -> list[dict]:
    """The committed epoch's history: a list of ``EpochRecord`` rows numbered 1, 2, ..., as
    many as the pointer says."""
    epoch = current_epoch(run_dir)
    path = epoch_folder(run_dir, epoch) / EPOCH_FILES["history"]
    if not path.is_file():
        raise RunError(f"{path}: history missing; the run's last epoch was not committed.")
    try:
        history = read_json(path)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RunError(f"{path}: not valid JSON ({exc}).") from None
    if not isinstance(history, list):
        raise RunError(f"{path}: damaged history: expected a list of epochs 1, 2, ...")
    for i, row in enumerate(history, start=1):
        record = fields_of(EpochRecord, row, str(path), f"epoch {i}")
        if record["epoch"] != i:
            raise RunError(f"{path}: epoch {i} is numbered {record['epoch']}; expected {i}.")
    if epoch is not None and len(history) != epoch:
        raise RunError(f"{path}: holds {len(history)} epochs, expected {epoch}.")
    return history


def save_epoch(
    run_dir: Path,
    net: nn.Module,
    state: dict,
    history: list[dict],
    metrics: dict[str, Any],
    curves: Figure,
) -> None:
    """Commit one finished epoch: its files into a new folder, then the pointer, then the
    previous epoch's folder goes (see the module docstring)."""
    from mapscope.report.figures import save_figure

    epoch = len(history)
    folder = epoch_folder(run_dir, epoch)
    if folder.exists():  # left by a writer killed before it moved the pointer
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    save_weights(net, folder / EPOCH_FILES["model"])
    save_state(state, folder / EPOCH_FILES["checkpoint"])
    write_json(folder / EPOCH_FILES["history"], history)
    save_figure(curves, folder / EPOCH_FILES["curves"], trim=False)
    write_metrics(folder, metrics)
    write_json(run_dir / POINTER, {"epoch": epoch})
    for other in (run_dir / EPOCHS).iterdir():
        if other != folder:
            shutil.rmtree(other, ignore_errors=True)


def load_epoch(run_dir: Path, net: nn.Module) -> tuple[dict, list[dict]]:
    """Weights into ``net``, and (optimizer state, history) of the last committed epoch."""
    folder = epoch_folder(run_dir)
    load_weights(net, folder / EPOCH_FILES["model"])
    state = load_state(folder / EPOCH_FILES["checkpoint"])
    return state, check_history(run_dir)


def resumable(run_dir: Path) -> None:
    folder = epoch_folder(run_dir)
    for role in ("model", "checkpoint", "history"):
        if not (folder / EPOCH_FILES[role]).is_file():
            raise RunError(
                f"{run_dir} cannot be resumed: {folder / EPOCH_FILES[role]} is missing "
                "(no epoch finished)."
            )
