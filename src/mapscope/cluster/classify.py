"""The KMeans-classifier sweep over numbers of clusters, with RandomForest and KNN for comparison.

``mode="all"`` fits and predicts on every sample, as the original study did (an optimistic number:
no sample is unseen). ``mode="split"`` fits on a stratified training part and predicts the rest;
``repeats`` draws several splits and reports mean and spread. RandomForest and KNN always need a
held-out part, so they are scored on the split (the first split in ``all`` mode).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.ensemble import RandomForestClassifier
from sklearn.neighbors import KNeighborsClassifier

from mapscope.cluster.inputs import clustering_scaling
from mapscope.cluster.kmeans_classifier import KMeansClassifier
from mapscope.data.bundle import DataBundle
from mapscope.errors import ConfigError
from mapscope.io import write_csv, write_json
from mapscope.metrics import confusion_matrix
from mapscope.progress import bar
from mapscope.report.cluster import plot_confusions, plot_error_vs_clusters, plot_prototypes
from mapscope.report.display import RichDisplay, short
from mapscope.report.figures import save_figure
from mapscope.runs.folder import provenance

MODES = ("all", "split")


@dataclass
class ClassifySweep(RichDisplay):
    """Error of the KMeans classifier per number of clusters, with RandomForest and KNN."""

    dataset: str
    mode: str
    repeats: int
    pca: int | None
    mapping: str
    scaling: str
    seed: int
    n_train: int
    n_test: int
    table: list[dict]  # per K: wrong, error (mean), error_std, purity, confusion ...
    comparison: dict[str, dict[str, float]]  # baseline name -> error, error_std (held-out)
    seconds: float
    class_names: list[str]
    models: dict[int, KMeansClassifier]  # the first repeat's model per K
    checksums: dict[str, str]
    image: bool
    comparison_on: str = "held-out test part of the split"

    def summary(self) -> str:
        lines = [
            f"{self.dataset}, {self.mode} mode ({self.repeats} repeat(s); each number a mean "
            f"over them, +- its standard deviation), {self.seconds:.1f} s",
            f"{'clusters':>8} {'wrong':>9} {'+-':>6} {'error':>8} {'+-':>7} {'purity':>7}",
        ]
        for r in self.table:
            lines.append(
                f"{r['clusters']:>8} {r['wrong']:>9.1f} {r['wrong_std']:>6.1f} {r['error']:>8.4f} "
                f"{r['error_std']:>7.4f} {r['mean_purity']:>7.3f}"
            )
        for name, values in self.comparison.items():
            lines.append(
                f"{name:>16}: error {values['error']:.4f} +- {values['error_std']:.4f} (held-out)"
            )
        return "\n".join(lines)

    def figure(self):
        """The error against the number of clusters, the baselines as lines."""
        return plot_error_vs_clusters(self)

    def _card(self):
        facts = [
            ("data", f"{self.dataset}: {self.n_train} to fit, {self.n_test} to test"),
            ("mode", f"{self.mode}, {self.repeats} repeat(s), labels by {self.mapping}"),
            *((name, f"error {v['error']:.4f} (held-out)") for name, v in self.comparison.items()),
        ]
        columns = ["clusters", "wrong", "error", "mean_purity"]
        rows = [[short(r[c]) for c in columns] for r in self.table]
        return f"KMeans as a classifier on {self.dataset}", facts, self.figure, (columns, rows)


def write_classify(result: ClassifySweep, out: str | Path) -> list[Path]:
    out = Path(out)
    saved = {k: v for k, v in vars(result).items() if k not in ("models", "checksums", "image")}
    saved["provenance"] = provenance(result.checksums)
    columns = ["clusters", "wrong", "wrong_std", "error", "error_std", "mean_purity"]
    written = [
        write_json(out / "classify.json", saved),
        write_csv(out / "classify.csv", columns, [[r[c] for c in columns] for r in result.table]),
        save_figure(result.figure(), out / "error_vs_clusters.png"),
    ]
    for k, fig in plot_confusions(result):
        written.append(save_figure(fig, out / f"confusion_k{k}.png"))
    if result.image and not result.pca:
        for k, model in result.models.items():
            fig = plot_prototypes(
                model.centroids_, model.cluster_labels_, model.purity_, result.class_names
            )
            written.append(save_figure(fig, out / f"prototypes_k{k}.png"))
    return written


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
) -> ClassifySweep:
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
        for k in bar(clusters, f"KMeans classifiers (repeat {r + 1} of {repeats})", unit="K"):
            model = KMeansClassifier(
                k,
                mapping,
                minibatch=image,
                n_init=3 if image else 10,
                pca=pca,
                random_state=seed + r,
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
        wrong = np.array([res["wrong"] for res in results[k]], dtype=float)
        purity = np.array([np.mean(res["purity"]) for res in results[k]])
        first = results[k][0]  # the confusion, purity and labels shown are the first repeat's
        table.append(
            {
                "clusters": k,
                "wrong": float(wrong.mean()),  # every number a mean over the repeats
                "wrong_std": float(wrong.std()),
                "error": float(errors.mean()),
                "error_std": float(errors.std()),
                "evaluated": int(first["confusion"].sum()),
                "mean_purity": float(purity.mean()),
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
    return ClassifySweep(
        dataset=dataset,
        mode=mode,
        repeats=repeats,
        pca=pca,
        mapping=mapping,
        scaling=scaling,
        seed=seed,
        n_train=len(bundle.split.train),
        n_test=len(bundle.split.test),
        table=table,
        comparison=comparison,
        seconds=time.perf_counter() - began,
        class_names=list(bundle.dataset.class_names),
        models={k: results[k][0]["model"] for k in clusters},
        checksums=bundle.dataset.checksums,
        image=image,
    )


def _baselines(x_train, y_train, x_test, y_test, seed: int, image: bool) -> dict[str, float]:
    forest = RandomForestClassifier(
        n_estimators=100 if not image else 50, random_state=seed, n_jobs=-1
    )
    knn = KNeighborsClassifier(n_neighbors=5 if not image else 3, n_jobs=-1)
    return {
        name: float((model.fit(x_train, y_train).predict(x_test) != y_test).mean())
        for name, model in (("random_forest", forest), ("knn", knn))
    }
