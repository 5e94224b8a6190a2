"""Elbow (inertia), average silhouette and fit time against the number of clusters.

Exact silhouette is quadratic in the number of samples, so on large data it is computed on a
seeded random sample (``silhouette_sample``), as scikit-learn's ``sample_size`` does.
"""

from __future__ import annotations

import time

import numpy as np
from sklearn.cluster import KMeans, MiniBatchKMeans
from sklearn.metrics import silhouette_score


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
