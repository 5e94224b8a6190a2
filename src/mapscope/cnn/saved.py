"""The CNN run kind: which files a CNN run folder holds, how they are written and read back.

Weights are safetensors (no code runs on load); the architecture is the JSON spec in
``config.json``; optimizer state for resuming is read with ``torch.load(weights_only=True)``.
Only this module knows these file names; ``mapscope.runs`` asks it through the registry.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from mapscope.cnn.build import Network
from mapscope.cnn.checkpoint import load_state, load_weights, save_state, save_weights
from mapscope.cnn.predict import predict_proba
from mapscope.cnn.spec import NetSpec, spec_from_dict
from mapscope.data.bundle import DataBundle
from mapscope.errors import RunError
from mapscope.io import read_json, write_json
from mapscope.report.curves import plot_cnn_history
from mapscope.report.figures import save_figure
from mapscope.runfolder import COMMON_FILES, create_run, require_tables

KIND = "cnn"
FILES = {
    **COMMON_FILES,
    "initial": "initial.safetensors",
    "model": "model.safetensors",
    "checkpoint": "checkpoint.pt",
    "history": "history.json",
    "curves": "curves.png",
}
NEURAL = True


def check_config(config: dict[str, Any], source: str) -> None:
    """Everything a CNN run's config.json must hold; the spec itself is validated in full."""
    require_tables(config, ("net", "train", "data"), "CNN", source)
    spec_of(config, source)


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


def save_epoch(run_dir: Path, net: Network, state: dict, history: list[dict]) -> None:
    """The files of one finished epoch: weights, optimizer state, history and curves."""
    save_weights(net, run_dir / FILES["model"])
    save_state(state, run_dir / FILES["checkpoint"])
    write_json(run_dir / FILES["history"], history)
    save_figure(plot_cnn_history(history), run_dir / FILES["curves"])


def load_epoch(run_dir: Path, net: Network) -> tuple[dict, list[dict]]:
    """Weights into ``net``, and (optimizer state, history) of the last finished epoch."""
    load_weights(net, run_dir / FILES["model"])
    return load_state(run_dir / FILES["checkpoint"]), read_json(run_dir / FILES["history"])


def load_module(run_dir: Path, config: dict[str, Any], which: str = "model") -> Network:
    """The trained network (``which``: model or initial weights) in eval mode."""
    net = Network(spec_of(config, f"{run_dir}/config.json"))
    load_weights(net, run_dir / FILES[which])
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
    for role in ("model", "checkpoint", "history"):
        if not (run_dir / FILES[role]).is_file():
            raise RunError(
                f"{run_dir} cannot be resumed: {FILES[role]} is missing (no epoch finished)."
            )
