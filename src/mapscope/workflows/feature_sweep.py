"""Cluster distances as compact inputs, swept over K: inertia, silhouette and fit time per K,
and optionally the MLP's accuracy on the K distances against the 784 pixels."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sklearn.metrics import silhouette_score
from tqdm.auto import tqdm

from mapscope.cluster.inputs import clustering_bundle
from mapscope.data.features import ClusterDistances
from mapscope.errors import ConfigError
from mapscope.io import write_csv, write_json
from mapscope.mlp.train import MLPConfig, train
from mapscope.report.cluster import plot_feature_sweep
from mapscope.report.display import RichDisplay, short
from mapscope.report.figures import save_figure
from mapscope.runs.folder import check_new_run, provenance


@dataclass
class FeatureSweep(RichDisplay):
    dataset: str
    rows: list[dict]
    seconds: float
    settings: dict
    checksums: dict[str, str]
    pixels_784: dict | None = None
    mlp_runs: list[Path] = field(default_factory=list)

    def summary(self) -> str:
        lines = [
            "  ".join(
                f"{key} {value:.4g}" if isinstance(value, float) else f"{key} {value}"
                for key, value in row.items()
            )
            for row in self.rows
        ]
        if self.pixels_784:
            p = self.pixels_784
            lines.append(
                f"784 pixels: test accuracy {p['test_accuracy']:.4f} in {p['mlp_seconds']:.1f} s"
            )
        lines.append(f"sweep took {self.seconds:.1f} s")
        return "\n".join(lines)

    def figure(self):
        """Test accuracy, fit time and silhouette against the number of centroids."""
        return plot_feature_sweep(self.rows)

    def _card(self):
        facts = [("data", self.dataset), ("took", f"{self.seconds:.1f} s")]
        if self.pixels_784:
            facts.append(("784 pixels", f"test accuracy {self.pixels_784['test_accuracy']:.4f}"))
        columns = list(dict.fromkeys(key for row in self.rows for key in row))
        rows = [[short(r.get(c)) for c in columns] for r in self.rows]
        return "KMeans distances as features", facts, self.figure, (columns, rows)


def feature_sweep(
    ks: list[int],
    dataset: str = "mnist",
    silhouette_sample: int = 5000,
    seed: int = 0,
    train_mlp_into: str | Path | None = None,
    mlp_epochs: int = 40,
    data_root: str | Path | None = None,
    overwrite: bool = False,
    max_train: int | None = None,
) -> FeatureSweep:
    """``train_mlp_into``: a folder for one MLP run per K and one on the pixels (None: no MLPs);
    MLP runs of an earlier sweep there are replaced only with ``overwrite``. ``max_train``:
    cluster and train on the first N training images only (quick experiments)."""
    if dataset == "wifi":
        raise ConfigError(
            "dataset wifi has no image pixels for cluster features to replace; use mnist or "
            "fashion-mnist."
        )
    if train_mlp_into is not None:  # refuse before the first run trains, not after
        for name in [*(f"mlp_k{k}" for k in ks), "mlp_pixels"]:
            check_new_run(Path(train_mlp_into) / name, overwrite)
    bundle = clustering_bundle(dataset, seed, data_root=data_root)
    if max_train is not None and max_train < 2:
        raise ConfigError(f"--max-train must be >= 2, got {max_train}.")
    x = bundle.inputs("train", bundle.first("train", max_train))
    if not 2 <= silhouette_sample <= len(x):
        raise ConfigError(f"silhouette_sample must lie in 2..{len(x)}, got {silhouette_sample}.")
    rows, runs = [], []
    began = time.perf_counter()
    sample = np.random.default_rng(seed).choice(len(x), silhouette_sample, replace=False)
    for n_clusters in tqdm(ks, desc="K", disable=None):
        t0 = time.perf_counter()
        model = ClusterDistances(n_clusters, seed=seed).fit(x)
        fit_seconds = time.perf_counter() - t0
        silhouette = (
            float(silhouette_score(x[sample], model.clusters(x[sample])))
            if n_clusters > 1
            else float("nan")
        )
        row = {
            "k": n_clusters,
            "inertia": model.inertia_,
            "silhouette": silhouette,
            "fit_seconds": fit_seconds,
        }
        if train_mlp_into is not None:
            run = Path(train_mlp_into) / f"mlp_k{n_clusters}"
            config = MLPConfig(
                dataset,
                epochs=mlp_epochs,
                cluster_features=n_clusters,
                seed=seed,
                max_train=max_train,
            )
            metrics = train(run, config, data_root, overwrite)
            runs.append(run)
            row.update(
                test_accuracy=metrics["test_accuracy"],
                mlp_seconds=metrics["train_seconds"],
                mlp_seconds_to_95=metrics["seconds_to_95"],
            )
        rows.append(row)
    pixels = None
    if train_mlp_into is not None:
        run = Path(train_mlp_into) / "mlp_pixels"
        config = MLPConfig(dataset, epochs=mlp_epochs, seed=seed, max_train=max_train)
        metrics = train(run, config, data_root, overwrite)
        runs.append(run)
        pixels = {
            "test_accuracy": metrics["test_accuracy"],
            "mlp_seconds": metrics["train_seconds"],
        }
    settings = {
        "seed": seed,
        "k": list(ks),
        "mlp_epochs": mlp_epochs if runs else None,
        "max_train": max_train,
    }
    return FeatureSweep(
        dataset, rows, time.perf_counter() - began, settings, bundle.dataset.checksums, pixels, runs
    )


def write_feature_sweep(result: FeatureSweep, out: str | Path) -> list[Path]:
    out = Path(out)
    saved = {
        "dataset": result.dataset,
        "rows": result.rows,
        "seconds": result.seconds,
        "provenance": provenance(result.checksums, **result.settings),
    }
    if result.pixels_784:
        saved["pixels_784"] = result.pixels_784
    rows = result.rows
    columns = list(dict.fromkeys(key for row in rows for key in row))
    return [
        write_json(out / "features.json", saved),
        write_csv(out / "features.csv", columns, [[r.get(c) for c in columns] for r in rows]),
        save_figure(result.figure(), out / "features.png"),
    ]
