"""Distances to KMeans centroids as compact inputs: K numbers per image instead of 784 pixels."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mapscope.data.prepare import Standardizer
from mapscope.errors import ConfigError, RunError
from mapscope.io import read_arrays, write_npz
from mapscope.metrics import squared_distances


class ClusterDistances:
    def __init__(self, n_clusters: int, n_init: int = 3, seed: int = 0, batch_size: int = 4096):
        if n_clusters < 1:
            raise ConfigError(f"cluster features need K >= 1, got {n_clusters}.")
        self.n_clusters, self.n_init, self.seed, self.batch_size = (
            n_clusters,
            n_init,
            seed,
            batch_size,
        )

    def fit(self, x: np.ndarray) -> ClusterDistances:
        from sklearn.cluster import MiniBatchKMeans  # only when fitting (0.9 s to import)

        model = MiniBatchKMeans(
            self.n_clusters, n_init=self.n_init, random_state=self.seed, batch_size=self.batch_size
        ).fit(x)
        self.centroids_ = model.cluster_centers_.astype(np.float32)
        self.inertia_ = float(model.inertia_)
        self.scaler_ = Standardizer().fit(self._distances(x))
        return self

    def _squared(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self.centroids_.shape[1]:
            raise ConfigError(f"expected samples (N, {self.centroids_.shape[1]}), got {x.shape}.")
        return squared_distances(x, self.centroids_)

    def _distances(self, x: np.ndarray) -> np.ndarray:
        return np.sqrt(self._squared(x))

    def clusters(self, x: np.ndarray) -> np.ndarray:
        """Index of the nearest centroid for every sample (for silhouettes and inspection)."""
        return self._squared(x).argmin(1)

    def transform(self, x: np.ndarray) -> np.ndarray:
        return self.scaler_.transform(self._distances(x))

    def save(self, path: str | Path) -> Path:
        return write_npz(
            path, centroids=self.centroids_, mean=self.scaler_.mean_, scale=self.scaler_.scale_
        )

    @classmethod
    def load(cls, path: str | Path) -> ClusterDistances:
        """Saved centroids and distance scaler, checked (finite; one scale per centroid, > 0)."""
        expected = {"centroids": ("float", 2), "mean": ("float", 1), "scale": ("float", 1)}
        f = read_arrays(path, expected, what="cluster-features file")
        k = len(f["centroids"])
        if k < 1 or f["mean"].shape != (k,) or f["scale"].shape != (k,) or (f["scale"] <= 0).any():
            raise RunError(
                f"{path}: damaged cluster features: {k} centroids need {k} means and {k} "
                "positive scales."
            )
        obj = cls(k)
        obj.centroids_ = f["centroids"].astype(np.float32)
        obj.scaler_ = Standardizer()
        obj.scaler_.mean_ = f["mean"].astype(np.float32)
        obj.scaler_.scale_ = f["scale"].astype(np.float32)
        return obj
