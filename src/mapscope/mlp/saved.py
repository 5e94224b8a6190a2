"""The MLP run kind: which files an MLP run folder holds, how they are written and read back.

The weights are a plain npz (read with ``allow_pickle=False``); a run trained on cluster
distances also holds the fitted ``cluster_features.npz`` that turns pixels into its inputs.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from mapscope.data.bundle import DataBundle
from mapscope.data.features import ClusterDistances
from mapscope.errors import RunError
from mapscope.history import from_stored
from mapscope.io import read_json, write_json
from mapscope.mlp.network import HIDDEN, LOSSES, MLP, check_mlp_size
from mapscope.runs.folder import COMMON_FILES, create_run, require_tables, write_metrics

KIND = "mlp"
FILES = {
    **COMMON_FILES,
    "model": "model.npz",
    "cluster_features": "cluster_features.npz",
    "history": "history.json",
    "batches": "batches.json",  # per-batch records (runs before the one history schema: none)
    "curves": "curves.png",
}
NEURAL = True


def check_config(config: dict[str, Any], source: str) -> None:
    require_tables(config, ("model", "train", "data"), "MLP", source)
    spec = config["model"]
    layers = spec.get("layers")
    if (
        not isinstance(layers, list)
        or len(layers) < 2
        or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in layers)
    ):
        raise RunError(f"{source}: model.layers must list at least two layer sizes >= 1.")
    check_mlp_size(layers, source, RunError)
    problems = [
        f"model.{key} must be one of {', '.join(allowed)}, got {spec.get(key)!r}"
        for key, allowed in (("activation", HIDDEN), ("loss", LOSSES))
        if spec.get(key) not in allowed
    ]
    if problems:
        raise RunError(f"{source}: " + "; ".join(problems) + ".")


def check_files(run_dir: Path, config: dict[str, Any]) -> None:
    """Weights (shapes against the config, finite), cluster features and history."""
    model = load_network(run_dir, config)
    features = load_features(run_dir)
    width = features.n_clusters if features else None
    if width is not None and model.layers[0] != width:
        raise RunError(
            f"{run_dir / FILES['cluster_features']}: {width} cluster distances, but the model "
            f"takes {model.layers[0]} inputs."
        )
    read_history(run_dir)


def read_history(run_dir: Path) -> tuple[list[dict], list[dict]]:
    """(per-epoch records, per-batch records) in the one history schema (``mapscope.history``),
    also from a run written before it (one ``history.json`` of ``batch`` and ``epoch`` lists)."""
    path = run_dir / FILES["history"]
    try:
        stored = read_json(path)
        batches = read_json(run_dir / FILES["batches"]) if isinstance(stored, list) else []
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise RunError(f"{path}: not readable JSON ({exc}).") from None
    old = isinstance(stored, dict)  # per-batch and per-epoch lists in one file
    if old:
        stored, batches = stored.get("epoch"), stored.get("batch")
    tables = all(isinstance(part, list) for part in (stored, batches)) and all(
        isinstance(row, dict) for row in [*stored, *batches]
    )
    if not tables or not stored:
        raise RunError(f"{path}: damaged history: expected a list of per-epoch records.")
    return (from_stored({"epoch": stored, "batch": batches})[0] if old else stored), batches


def layer_names(config: dict[str, Any]) -> list[str]:
    return [f"Dense_{i}" for i in range(1, len(config["model"]["layers"]))]


def write_run(
    folder: str | Path,
    config,
    bundle: DataBundle,
    model: MLP,
    features: ClusterDistances | None,
    effective_l2: float,
    history: list[dict],
    batches: list[dict],
    metrics: dict,
) -> Path:
    from mapscope.report.curves import plot_mlp_history, what_training_adds
    from mapscope.report.figures import save_figure

    spec = {"layers": list(model.layers), "activation": model.activation, "loss": model.loss}
    run = create_run(
        folder,
        {
            "kind": KIND,
            "train": asdict(config),
            "data": bundle.config(),
            "model": spec,
            "effective_l2": effective_l2,
        },
    )
    bundle.save(run)
    if features is not None:
        features.save(run / FILES["cluster_features"])
    model.save(run / FILES["model"])
    write_json(run / FILES["history"], history)
    write_json(run / FILES["batches"], batches)
    minimised = what_training_adds(l1=config.l1, l2=config.l2)
    curves = plot_mlp_history(history, batches, minimised)
    save_figure(curves, run / FILES["curves"], trim=False)
    write_metrics(run, metrics)
    return run


def load_network(run_dir: Path, config: dict[str, Any]) -> MLP:
    spec = config["model"]
    return MLP(tuple(spec["layers"]), spec["activation"], spec["loss"]).load_parameters(
        run_dir / FILES["model"]
    )


def load_features(run_dir: Path) -> ClusterDistances | None:
    path = run_dir / FILES["cluster_features"]
    return ClusterDistances.load(path) if path.exists() else None


def load_module(run_dir: Path, config: dict[str, Any]):
    """The MLP as a torch module (layers ``Dense_1`` ...) for the inspection tools."""
    if (run_dir / FILES["cluster_features"]).exists():
        raise RunError(
            f"{run_dir} is trained on cluster distances, not pixels; the inspection tools need "
            "a run trained on pixels."
        )
    from mapscope.mlp.module import as_module  # torch: only the inspection tools need it

    return as_module(load_network(run_dir, config))


class Predictor:
    def __init__(self, model: MLP, features: ClusterDistances | None):
        self.model, self.features = model, features

    def predict_proba(self, bundle: DataBundle, part: str, indices=None) -> np.ndarray:
        x = bundle.inputs(part, indices)
        return self.model.predict_proba(self.features.transform(x) if self.features else x)

    def predict(self, bundle: DataBundle, part: str, indices=None) -> np.ndarray:
        return self.predict_proba(bundle, part, indices).argmax(1)


def load_predictor(run_dir: Path, config: dict[str, Any]) -> Predictor:
    return Predictor(load_network(run_dir, config), load_features(run_dir))
