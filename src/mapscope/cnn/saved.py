"""The CNN run kind: which files a CNN run folder holds, how they are written and read back.

Weights are safetensors (no code runs on load); the architecture is the JSON spec in
``config.json``; optimizer state for resuming is read with ``torch.load(weights_only=True)``.
Only this module knows these file names; ``mapscope.runs`` asks it through the registry. An
epoch's files are committed as a set (``mapscope.runs.epochs``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from mapscope.cnn.build import Network
from mapscope.cnn.predict import predict_proba
from mapscope.cnn.spec import NetSpec, spec_from_dict
from mapscope.data.bundle import DataBundle
from mapscope.errors import ConfigError, RunError
from mapscope.io import read_json
from mapscope.runs import epochs
from mapscope.runs.folder import COMMON_FILES, require_tables
from mapscope.weights import load_weights

KIND = "cnn"
FILES = {**COMMON_FILES, "initial": epochs.INITIAL, "epoch": epochs.POINTER}
NEURAL = True


def paths(run_dir: Path) -> dict[str, Path]:
    """Every file of the run by role, epoch files resolved through the pointer."""
    return epochs.paths(run_dir, FILES)


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
    epochs.check_files(run_dir, config, load_module)


def check_history(run_dir: Path) -> list[dict]:
    return epochs.check_history(run_dir)


def spec_of(config: dict[str, Any], source: str = "config.json") -> NetSpec:
    return spec_from_dict(config["net"], source)


def layer_names(config: dict[str, Any]) -> list[str]:
    return spec_of(config).layer_names


def start(
    run_dir: Path,
    spec: NetSpec,
    train: dict,
    bundle: DataBundle,
    net: Network,
    extra: dict | None = None,
) -> None:
    epochs.start(run_dir, KIND, spec.to_dict(), train, bundle, net, extra)


def save_epoch(
    run_dir: Path, net: Network, state: dict, history: list[dict], metrics: dict[str, Any]
) -> None:
    from mapscope.report.curves import plot_cnn_history

    figure = plot_cnn_history(history, minimised_beside_cross_entropy(run_dir, net))
    epochs.save_epoch(run_dir, net, state, history, metrics, figure)


def minimised_beside_cross_entropy(run_dir: Path, net: Network) -> str:
    """What the run's training loss adds to cross-entropy: its label smoothing (config.json)
    and its kernels' penalties (the spec); "" for none."""
    from mapscope.report.curves import what_training_adds

    train = read_json(run_dir / COMMON_FILES["config"]).get("train", {})
    return what_training_adds(train.get("label_smoothing", 0.0), net.spec.l1, net.spec.l2)


def load_epoch(run_dir: Path, net: Network) -> tuple[dict, list[dict]]:
    return epochs.load_epoch(run_dir, net)


def load_module(run_dir: Path, config: dict[str, Any], which: str = "model") -> Network:
    """The trained network (``which``: model or initial weights) in eval mode, its weights in
    the channels-last layout it was trained in (oneDNN's convolutions and pooling run about
    twice as fast on it as on NCHW weights)."""
    net = Network(spec_of(config, f"{run_dir}/config.json"))
    load_weights(net, paths(run_dir)[which])
    return net.to(memory_format=torch.channels_last).eval()


class Predictor:
    def __init__(self, net: Network):
        self.net = net

    def predict_proba(self, bundle: DataBundle, part: str, indices=None) -> np.ndarray:
        return predict_proba(self.net, bundle.inputs(part, indices, layout="nchw"))

    def predict(self, bundle: DataBundle, part: str, indices=None) -> np.ndarray:
        return self.predict_proba(bundle, part, indices).argmax(1)


def load_predictor(run_dir: Path, config: dict[str, Any]) -> Predictor:
    return Predictor(load_module(run_dir, config))


resumable = epochs.resumable
