"""The autoencoder run kind (``ae``): which files its run folder holds, how they are read.

The same layout as a CNN run: ``config.json`` (the spec under ``net``), ``split.npz``, the
scaler, ``initial.safetensors``, and each epoch's weights, optimizer state, history and curves
committed as a set under ``epochs/NNNN/`` (``mapscope.runs.epochs``). An autoencoder has no classes,
so it has no predictor; it has a module, so every inspection works on it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from mapscope.ae.build import AutoEncoder, build
from mapscope.ae.spec import AESpec, spec_from_dict
from mapscope.data.bundle import DataBundle
from mapscope.errors import ConfigError, RunError
from mapscope.runs import epochs
from mapscope.runs.folder import COMMON_FILES, require_tables
from mapscope.weights import load_weights

KIND = "ae"
FILES = {**COMMON_FILES, "initial": epochs.INITIAL, "epoch": epochs.POINTER}
NEURAL = True


def paths(run_dir: Path) -> dict[str, Path]:
    return epochs.paths(run_dir, FILES)


def spec_of(config: dict[str, Any], source: str = "config.json") -> AESpec:
    return spec_from_dict(config["net"], source)


def check_config(config: dict[str, Any], source: str) -> None:
    require_tables(config, ("net", "train", "data"), "autoencoder", source)
    try:
        spec_of(config, source)
    except (ConfigError, TypeError) as exc:
        raise RunError(f"{source}: damaged autoencoder spec ({exc}).") from None


def check_files(run_dir: Path, config: dict[str, Any]) -> None:
    epochs.check_files(run_dir, config, load_module)


def check_history(run_dir: Path) -> list[dict]:
    return epochs.check_history(run_dir)


def layer_names(config: dict[str, Any]) -> list[str]:
    return spec_of(config).layer_names


def start(run_dir: Path, spec: AESpec, train: dict, bundle: DataBundle, net: AutoEncoder) -> None:
    epochs.start(run_dir, KIND, spec.to_dict(), train, bundle, net)


def save_epoch(
    run_dir: Path, net: AutoEncoder, state: dict, history: list[dict], metrics: dict[str, Any]
) -> None:
    from mapscope.report.curves import plot_ae_history

    epochs.save_epoch(run_dir, net, state, history, metrics, plot_ae_history(history))


def load_epoch(run_dir: Path, net: AutoEncoder) -> tuple[dict, list[dict]]:
    return epochs.load_epoch(run_dir, net)


def load_module(run_dir: Path, config: dict[str, Any], which: str = "model") -> AutoEncoder:
    """The trained autoencoder (``which``: model or initial weights) in eval mode, in the
    channels-last layout it was trained in (the faster one for oneDNN's convolutions)."""
    net = build(spec_of(config, f"{run_dir}/config.json"))
    load_weights(net, paths(run_dir)[which])
    return net.to(memory_format=torch.channels_last).eval()


def load_predictor(run_dir: Path, config: dict[str, Any]):
    raise RunError(
        f"{run_dir} holds an autoencoder, which reconstructs images and predicts no classes; "
        "use `mapscope ae reconstruct`, `ae latent` or `ae generate`, or give a CNN or MLP run."
    )


resumable = epochs.resumable
