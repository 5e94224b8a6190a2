"""The KMeans run kind: one fitted ``KMeansClassifier`` saved as a run folder (for `evaluate`).

``fit_run`` computes (fit on the training part, score on the test part) and returns a result;
``write_run`` writes it. The model file is a plain npz read with ``allow_pickle=False``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mapscope.cluster.inputs import clustering_bundle
from mapscope.cluster.kmeans_classifier import KMeansClassifier
from mapscope.data.bundle import DataBundle
from mapscope.errors import RunError
from mapscope.io import read_arrays, write_npz
from mapscope.runs.folder import COMMON_FILES, create_run, require_tables, write_metrics, writing

KIND = "kmeans"
FILES = {
    **COMMON_FILES,
    "model": "model.npz",
}
NEURAL = False


def check_config(config: dict[str, Any], source: str) -> None:
    require_tables(config, ("model", "data"), "KMeans", source)


def check_files(run_dir: Path, config: dict[str, Any]) -> None:
    load_model(run_dir / FILES["model"])


def layer_names(config: dict[str, Any]) -> list[str]:
    return []


def save_model(model: KMeansClassifier, path: str | Path) -> Path:
    extra = (
        {}
        if model.pca_components_ is None
        else {"pca_components": model.pca_components_, "pca_mean": model.pca_mean_}
    )
    return write_npz(
        path,
        centroids=model.centroids_,
        cluster_labels=model.cluster_labels_,
        label_counts=model.label_counts_,
        classes=model.classes_,
        purity=model.purity_,
        inertia=np.array(model.inertia_),
        mapping=np.array(model.mapping),
        **extra,
    )


def load_model(path: str | Path) -> KMeansClassifier:
    """A saved classifier, checked: finite centroids, one class per cluster taken from the
    saved classes, and PCA parts that fit the centroids."""
    expected = {
        "centroids": ("float", 2),
        "cluster_labels": ("int", 1),
        "label_counts": ("int", 2),
        "classes": ("int", 1),
        "purity": ("float", 1),
        "inertia": ("float", 0),
        "mapping": ("str", 0),
        "pca_components": ("float", 2),
        "pca_mean": ("float", 1),
    }
    f = read_arrays(path, expected, ("pca_components", "pca_mean"), "KMeans classifier file")
    k, width = f["centroids"].shape
    problems = []
    if k < 1 or f["cluster_labels"].shape != (k,) or f["purity"].shape != (k,):
        problems.append(f"{k} centroids need {k} cluster labels and purities")
    elif not np.isin(f["cluster_labels"], f["classes"]).all():
        problems.append("a cluster label is not one of the saved classes")
    if ("pca_components" in f) != ("pca_mean" in f):
        problems.append("PCA components and mean must be saved together")
    elif "pca_components" in f and (
        f["pca_components"].shape[0] != width
        or f["pca_mean"].shape != (f["pca_components"].shape[1],)
    ):
        problems.append("the PCA parts do not fit the centroids")
    if problems:
        raise RunError(f"{path}: damaged KMeans classifier: {'; '.join(problems)}.")
    model = KMeansClassifier(k, str(f["mapping"]))
    model.centroids_, model.cluster_labels_ = f["centroids"], f["cluster_labels"]
    model.label_counts_, model.classes_ = f["label_counts"], f["classes"]
    model.purity_, model.inertia_ = f["purity"], float(f["inertia"])
    model.pca_components_ = f.get("pca_components")
    model.pca_mean_ = f.get("pca_mean")
    features = model.pca_mean_ if model.pca_mean_ is not None else model.centroids_[0]
    model.n_features_in_ = len(features)
    return model


class Predictor:
    def __init__(self, model: KMeansClassifier):
        self.model = model

    def predict(self, bundle: DataBundle, part: str, indices=None) -> np.ndarray:
        return self.model.predict(bundle.inputs(part, indices))


def load_predictor(run_dir: Path, config: dict[str, Any]) -> Predictor:
    return Predictor(load_model(run_dir / FILES["model"]))


@dataclass
class KMeansRun:
    model: KMeansClassifier
    bundle: DataBundle
    settings: dict[str, Any]
    test_accuracy: float
    seconds: float

    def summary(self) -> str:
        return (
            f"{self.model.n_clusters} clusters: test accuracy {self.test_accuracy:.4f} "
            f"({self.seconds:.1f} s)"
        )


def fit_run(
    dataset: str = "mnist",
    clusters: int = 100,
    mapping: str = "majority",
    pca: int | None = None,
    seed: int = 0,
    data_root: str | Path | None = None,
) -> KMeansRun:
    """Fit one KMeans classifier on the training part and score it on the test part."""
    image = dataset != "wifi"
    bundle = clustering_bundle(dataset, seed, data_root=data_root)
    began = time.perf_counter()
    model = KMeansClassifier(
        clusters, mapping, minibatch=image, n_init=3 if image else 10, pca=pca, random_state=seed
    )
    model.fit(bundle.inputs("train"), bundle.labels("train"))
    seconds = time.perf_counter() - began
    accuracy = float((model.predict(bundle.inputs("test")) == bundle.labels("test")).mean())
    settings = {"clusters": clusters, "mapping": mapping, "pca": pca}
    return KMeansRun(model, bundle, settings, accuracy, seconds)


def write_run(result: KMeansRun, out: str | Path, overwrite: bool = False) -> list[Path]:
    """Write the fitted classifier as the run folder ``out`` (an existing run there is replaced
    only with ``overwrite``, and whole)."""
    with writing(out, overwrite) as writer:
        _write_files(result, writer.folder)
    return [Path(out) / FILES[role] for role in ("model", "config", "metrics")]


def _write_files(result: KMeansRun, folder: Path) -> None:
    seed = result.model.random_state
    run = create_run(
        folder,
        {"kind": KIND, "model": result.settings, "data": result.bundle.config(), "seed": seed},
    )
    result.bundle.save(run)
    metrics = {
        "test_accuracy": result.test_accuracy,
        "train_seconds": result.seconds,
        "seed": seed,
        "data_checksums": result.bundle.dataset.checksums,
    }
    save_model(result.model, run / FILES["model"])
    write_metrics(run, metrics)
