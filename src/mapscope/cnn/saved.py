"""The CNN run kind: which files a CNN run folder holds, how they are written and read back.

Weights are safetensors (no code runs on load); the architecture is the JSON spec in
``config.json``; optimizer state for resuming is read with ``torch.load(weights_only=True)``.
Only this module knows these file names; ``mapscope.runs`` asks it through the registry.

An epoch's files (weights, optimizer state, history, curves) are committed as a set: they are
written into a fresh folder ``epochs/NNNN/`` and only then does the pointer ``epoch.json`` (one
small file, replaced atomically) name that folder; the previous epoch's folder is deleted after.
A crash at any moment leaves the pointer on a complete epoch, so ``--resume`` always continues
from a consistent state.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np

from mapscope.cnn.build import Network
from mapscope.cnn.checkpoint import load_state, load_weights, save_state, save_weights
from mapscope.cnn.predict import predict_proba
from mapscope.cnn.spec import NetSpec, spec_from_dict
from mapscope.data.bundle import DataBundle
from mapscope.errors import ConfigError, RunError
from mapscope.io import read_json, write_json
from mapscope.report.curves import plot_cnn_history
from mapscope.report.figures import save_figure
from mapscope.runfolder import COMMON_FILES, METRICS, create_run, require_tables, write_metrics

KIND = "cnn"
FILES = {**COMMON_FILES, "initial": "initial.safetensors", "epoch": "epoch.json"}
# the files of one finished epoch, in the folder that epoch.json points to
EPOCH_FILES = {
    "model": "model.safetensors",
    "checkpoint": "checkpoint.pt",
    "history": "history.json",
    "curves": "curves.png",
    "metrics": METRICS,
}
EPOCHS = "epochs"
NEURAL = True


def current_epoch(run_dir: Path) -> int | None:
    """The last committed epoch, from the pointer file; None before the first."""
    pointer = run_dir / FILES["epoch"]
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
    """The folder of ``epoch`` (default: the committed one). Runs written before epochs were
    committed as sets keep their files at the top level; they are read from there."""
    epoch = current_epoch(run_dir) if epoch is None else epoch
    return run_dir if epoch is None else run_dir / EPOCHS / f"{epoch:04d}"


def paths(run_dir: Path) -> dict[str, Path]:
    """Every file of the run by role, epoch files resolved through the pointer."""
    folder = epoch_folder(run_dir)
    return {
        **{role: run_dir / name for role, name in FILES.items()},
        **{role: folder / name for role, name in EPOCH_FILES.items()},
    }


IMAGE_SHAPE = (1, 28, 28)  # what mnist and fashion-mnist give the network


def check_config(config: dict[str, Any], source: str) -> None:
    """Everything a CNN run's config.json must hold; the spec itself is validated in full."""
    require_tables(config, ("net", "train", "data"), "CNN", source)
    try:
        spec = spec_of(config, source)
    except ConfigError as exc:
        raise RunError(str(exc)) from None
    if spec.input_shape != IMAGE_SHAPE:
        raise RunError(
            f"{source}: input_shape {list(spec.input_shape)} does not match the dataset "
            f"{config['data'].get('dataset')!r} ({list(IMAGE_SHAPE)})."
        )


def check_files(run_dir: Path, config: dict[str, Any]) -> None:
    """Every file of the committed epoch: weights (names, shapes, dtypes, finite), history
    and checkpoint; a damaged one is one RunError naming it."""
    files = paths(run_dir)
    load_module(run_dir, config)
    if files["initial"].exists():
        load_module(run_dir, config, "initial")
    check_history(run_dir)
    load_state(files["checkpoint"])


HISTORY_KEYS = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy", "lr", "seconds")


def check_history(run_dir: Path) -> list[dict]:
    """The committed epoch's history: a list of rows numbered 1, 2, ... with numbers (or
    null), as many as the pointer says."""
    epoch = current_epoch(run_dir)
    path = epoch_folder(run_dir, epoch) / EPOCH_FILES["history"]
    if not path.is_file():
        raise RunError(f"{path}: history missing; the run's last epoch was not committed.")
    try:
        history = read_json(path)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RunError(f"{path}: not valid JSON ({exc}).") from None
    ok = isinstance(history, list) and all(
        isinstance(row, dict)
        and row.get("epoch") == i
        and all(isinstance(row.get(k), int | float | None) for k in HISTORY_KEYS)
        for i, row in enumerate(history, start=1)
    )
    if not ok:
        raise RunError(
            f"{path}: damaged history: expected a list of epochs 1, 2, ... each with numbers "
            f"for {', '.join(HISTORY_KEYS)}."
        )
    if epoch is not None and len(history) != epoch:
        raise RunError(f"{path}: holds {len(history)} epochs, expected {epoch}.")
    return history


def spec_of(config: dict[str, Any], source: str = "config.json") -> NetSpec:
    return spec_from_dict(config["net"], source)


def layer_names(config: dict[str, Any]) -> list[str]:
    return spec_of(config).layer_names


def start(run_dir: Path, spec: NetSpec, train: dict, bundle: DataBundle, net: Network) -> None:
    """A new run: its config, split, scaler and the initial weights (for ``--restart``)."""
    create_run(
        run_dir, {"kind": KIND, "net": spec.to_dict(), "train": train, "data": bundle.config()}
    )
    bundle.save(run_dir)
    save_weights(net, run_dir / FILES["initial"])


def save_epoch(
    run_dir: Path, net: Network, state: dict, history: list[dict], metrics: dict[str, Any]
) -> None:
    """Commit one finished epoch: its files into a new folder, then the pointer, then the
    previous epoch's folder goes (see the module docstring)."""
    epoch = len(history)
    folder = epoch_folder(run_dir, epoch)
    if folder.exists():  # left by a writer killed before it moved the pointer
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    save_weights(net, folder / EPOCH_FILES["model"])
    save_state(state, folder / EPOCH_FILES["checkpoint"])
    write_json(folder / EPOCH_FILES["history"], history)
    save_figure(plot_cnn_history(history), folder / EPOCH_FILES["curves"])
    write_metrics(folder, metrics)
    write_json(run_dir / FILES["epoch"], {"epoch": epoch})
    for other in (run_dir / EPOCHS).iterdir():
        if other != folder:
            shutil.rmtree(other, ignore_errors=True)


def load_epoch(run_dir: Path, net: Network) -> tuple[dict, list[dict]]:
    """Weights into ``net``, and (optimizer state, history) of the last committed epoch."""
    files = paths(run_dir)
    load_weights(net, files["model"])
    state = load_state(files["checkpoint"])
    history = check_history(run_dir)
    return state, history


def load_module(run_dir: Path, config: dict[str, Any], which: str = "model") -> Network:
    """The trained network (``which``: model or initial weights) in eval mode."""
    net = Network(spec_of(config, f"{run_dir}/config.json"))
    load_weights(net, paths(run_dir)[which])
    return net.eval()


class Predictor:
    def __init__(self, net: Network):
        self.net = net

    def predict_proba(self, bundle: DataBundle, part: str, indices=None) -> np.ndarray:
        return predict_proba(self.net, bundle.inputs(part, indices, layout="nchw"))

    def predict(self, bundle: DataBundle, part: str, indices=None) -> np.ndarray:
        return self.predict_proba(bundle, part, indices).argmax(1)


def load_predictor(run_dir: Path, config: dict[str, Any]) -> Predictor:
    return Predictor(load_module(run_dir, config))


def resumable(run_dir: Path) -> None:
    files = paths(run_dir)
    for role in ("model", "checkpoint", "history"):
        if not files[role].is_file():
            raise RunError(
                f"{run_dir} cannot be resumed: {files[role]} is missing (no epoch finished)."
            )
