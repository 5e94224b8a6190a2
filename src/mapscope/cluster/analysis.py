"""Elbow (inertia), average silhouette and fit time against the number of clusters.

Exact silhouette is quadratic in the number of samples, so on large data it is computed on a
seeded random sample (``silhouette_sample``), as scikit-learn's ``sample_size`` does.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.cluster import KMeans, MiniBatchKMeans
from sklearn.metrics import silhouette_score

from mapscope.cluster.inputs import clustering_bundle
from mapscope.errors import ConfigError
from mapscope.io import write_csv, write_json
from mapscope.report.cluster import plot_k_analysis
from mapscope.report.display import RichDisplay, short
from mapscope.report.figures import save_figure
from mapscope.runs.folder import provenance


def analyze_k(
    x: np.ndarray,
    ks: list[int],
    seed: int = 0,
    minibatch: bool | None = None,
    n_init: int = 3,
    silhouette_sample: int = 5000,
) -> list[dict[str, float]]:
    minibatch = len(x) > 20000 if minibatch is None else minibatch
    rows = []
    for k in ks:
        began = time.perf_counter()
        if minibatch:
            model = MiniBatchKMeans(k, n_init=n_init, random_state=seed, batch_size=4096)
        else:
            model = KMeans(k, n_init=n_init, random_state=seed)
        labels = model.fit_predict(x)
        seconds = time.perf_counter() - began
        sample = min(silhouette_sample, len(x))
        silhouette = (
            float(silhouette_score(x, labels, sample_size=sample, random_state=seed))
            if k > 1
            else float("nan")
        )
        rows.append(
            {
                "k": k,
                "inertia": float(model.inertia_),
                "silhouette": silhouette,
                "fit_seconds": seconds,
            }
        )
    return rows


def suggest_k(rows: list[dict[str, float]]) -> dict[str, int]:
    """Best silhouette, and the elbow: the k farthest below the line joining the inertia end points."""
    ks = np.array([r["k"] for r in rows], dtype=float)
    inertia = np.array([r["inertia"] for r in rows])
    sil = np.array([r["silhouette"] for r in rows])
    best_sil = int(ks[np.nanargmax(sil)]) if np.isfinite(sil).any() else int(ks[0])
    if len(ks) < 3:
        return {"silhouette": best_sil, "elbow": int(ks[0])}
    kx = (ks - ks[0]) / (ks[-1] - ks[0])
    iy = (inertia - inertia[-1]) / (inertia[0] - inertia[-1] or 1)
    distance = (1 - kx) - iy  # below the straight line from (0, 1) to (1, 0)
    return {"silhouette": best_sil, "elbow": int(ks[np.argmax(distance)])}


@dataclass
class KAnalysis(RichDisplay):
    dataset: str
    samples: int
    rows: list[dict[str, float]]
    suggestion: dict[str, int]
    seed: int
    checksums: dict[str, str]

    def summary(self) -> str:
        lines = [
            f"k={r['k']:>3}  inertia {r['inertia']:.4g}  silhouette {r['silhouette']:.4f}  "
            f"{r['fit_seconds']:.2f} s"
            for r in self.rows
        ]
        s = self.suggestion
        lines.append(f"suggested k: {s['silhouette']} (best silhouette), {s['elbow']} (elbow)")
        return "\n".join(lines)

    def figure(self):
        """The elbow (inertia) and the silhouette against k, the suggestions marked."""
        title = f"{self.dataset}: {self.samples} samples"
        return plot_k_analysis(self.rows, self.suggestion, title)

    def _card(self):
        s = self.suggestion
        facts = [
            ("data", f"{self.dataset}, {self.samples} samples"),
            ("suggested k", f"{s['silhouette']} (best silhouette), {s['elbow']} (elbow)"),
        ]
        columns = ["k", "inertia", "silhouette", "fit_seconds"]
        rows = [[short(r[c]) for c in columns] for r in self.rows]
        return f"How many clusters in {self.dataset}?", facts, self.figure, (columns, rows)


def analyze(
    dataset: str,
    ks: list[int],
    seed: int = 0,
    silhouette_sample: int = 5000,
    data_root: str | Path | None = None,
) -> KAnalysis:
    """Elbow and silhouette of a dataset's training part for every k in ``ks``."""
    if silhouette_sample < 2:
        raise ConfigError(f"silhouette_sample must be >= 2, got {silhouette_sample}.")
    bundle = clustering_bundle(dataset, seed, data_root=data_root)
    x = bundle.inputs("train")
    bad = [k for k in ks if not 1 <= k <= len(x) - 1]
    if bad:
        raise ConfigError(f"k must lie in 1..{len(x) - 1} for {dataset}; got {bad}.")
    rows = analyze_k(x, ks, seed, silhouette_sample=silhouette_sample)
    return KAnalysis(dataset, len(x), rows, suggest_k(rows), seed, bundle.dataset.checksums)


def write_analysis(result: KAnalysis, out: str | Path) -> list[Path]:
    out = Path(out)
    saved = {
        "dataset": result.dataset,
        "samples": result.samples,
        "rows": result.rows,
        "suggested_k": result.suggestion,
        "provenance": provenance(result.checksums, seed=result.seed),
    }
    rows = result.rows
    return [
        write_json(out / "analyze.json", saved),
        write_csv(out / "analyze.csv", list(rows[0]), [list(r.values()) for r in rows]),
        save_figure(result.figure(), out / "analyze.png"),
    ]
