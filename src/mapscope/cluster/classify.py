"""The KMeans-classifier sweep over numbers of clusters, with RandomForest and KNN for comparison.

``mode="all"`` fits and predicts on every sample, as the original study did (an optimistic number:
no sample is unseen). ``mode="split"`` fits on a stratified training part and predicts the rest;
``repeats`` draws several splits and reports mean and spread. RandomForest and KNN always need a
held-out part, so they are scored on the split (the first split in ``all`` mode).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.ensemble import RandomForestClassifier
from sklearn.neighbors import KNeighborsClassifier

from mapscope.cluster.inputs import clustering_scaling
from mapscope.cluster.kmeans_classifier import KMeansClassifier
from mapscope.data.bundle import DataBundle
from mapscope.errors import ConfigError
from mapscope.evaluate.metrics import confusion_matrix

MODES = ("all", "split")


def classify_sweep(
    dataset: str,
    clusters: list[int],
    mode: str = "all",
    test_size: int | None = None,
    repeats: int = 1,
    pca: int | None = None,
    seed: int = 0,
    mapping: str = "majority",
    scaling: str | None = None,
    data_root: str | Path | None = None,
) -> dict[str, Any]:
    if mode not in MODES:
        raise ConfigError(f"mode {mode!r} unknown; choose all or split.")
    if repeats < 1 or not clusters:
        raise ConfigError("need at least one number of clusters and repeats >= 1.")
    image = dataset != "wifi"
    scaling = scaling or clustering_scaling(dataset)
    split_mode = "canonical" if image and repeats == 1 else ("resplit" if image else "stratified")
    began = time.perf_counter()
    results: dict[int, list[dict]] = {k: [] for k in clusters}
    baselines: list[dict] = []
    bundle = None
    for r in range(repeats):
        bundle = DataBundle.create(
            dataset,
            scaling,
            split_mode,
            seed + r,
            test_size if not image else None,
            data_root=data_root,
        )
        x_train, y_train = bundle.inputs("train"), bundle.labels("train")
        x_test, y_test = bundle.inputs("test"), bundle.labels("test")
        if mode == "all":
            x_fit = np.concatenate([x_train, x_test])
            y_fit = np.concatenate([y_train, y_test])
            x_eval, y_eval = x_fit, y_fit
        else:
            x_fit, y_fit, x_eval, y_eval = x_train, y_train, x_test, y_test
        for k in clusters:
            model = KMeansClassifier(
                k, mapping, minibatch=image, n_init=3 if image else 10, pca=pca, seed=seed + r
            ).fit(x_fit, y_fit)
            predicted = model.predict(x_eval)
            matrix = confusion_matrix(y_eval, predicted, bundle.dataset.n_classes)
            wrong = int(len(y_eval) - np.trace(matrix))
            results[k].append(
                {
                    "wrong": wrong,
                    "error": wrong / len(y_eval),
                    "confusion": matrix,
                    "purity": model.purity_,
                    "cluster_labels": model.cluster_labels_,
                    "model": model,
                }
            )
        if r == 0 or mode == "split":
            baselines.append(_baselines(x_train, y_train, x_test, y_test, seed + r, image))
    table = []
    for k in clusters:
        errors = np.array([res["error"] for res in results[k]])
        first = results[k][0]
        table.append(
            {
                "clusters": k,
                "wrong": first["wrong"],
                "error": float(errors.mean()),
                "error_std": float(errors.std()),
                "evaluated": int(first["confusion"].sum()),
                "mean_purity": float(np.mean(first["purity"])),
                "confusion": first["confusion"],
                "purity": first["purity"],
                "cluster_labels": first["cluster_labels"],
            }
        )
    comparison = {
        name: {
            "error": float(np.mean([b[name] for b in baselines])),
            "error_std": float(np.std([b[name] for b in baselines])),
        }
        for name in baselines[0]
    }
    return {
        "dataset": dataset,
        "mode": mode,
        "repeats": repeats,
        "pca": pca,
        "mapping": mapping,
        "scaling": scaling,
        "seed": seed,
        "n_train": len(bundle.split.train),
        "n_test": len(bundle.split.test),
        "table": table,
        "comparison": comparison,
        "comparison_on": "held-out test part of the split",
        "seconds": time.perf_counter() - began,
        "class_names": list(bundle.dataset.class_names),
        "models": {k: results[k][0]["model"] for k in clusters},
        "bundle": bundle,
    }


def _baselines(x_train, y_train, x_test, y_test, seed: int, image: bool) -> dict[str, float]:
    forest = RandomForestClassifier(
        n_estimators=100 if not image else 50, random_state=seed, n_jobs=-1
    )
    knn = KNeighborsClassifier(n_neighbors=5 if not image else 3, n_jobs=-1)
    return {
        name: float((model.fit(x_train, y_train).predict(x_test) != y_test).mean())
        for name, model in (("random_forest", forest), ("knn", knn))
    }
