"""KMeans as a classifier: cluster the training samples, then name each cluster after its labels.

``mapping="majority"`` gives every cluster the label that contributes most of its samples (several
clusters may share a label); ``"hungarian"`` assigns labels one-to-one so that the matched samples
are as many as possible (clusters left over when K > classes fall back to their majority).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy.optimize import linear_sum_assignment
from sklearn.cluster import KMeans, MiniBatchKMeans
from sklearn.decomposition import PCA

from mapscope.cluster.distances import squared_distances
from mapscope.errors import ConfigError, RunError
from mapscope.io import write_npz

MAPPINGS = ("majority", "hungarian")


class KMeansClassifier:
    def __init__(
        self,
        n_clusters: int = 8,
        mapping: str = "majority",
        minibatch: bool = False,
        n_init: int = 10,
        pca: int | None = None,
        seed: int = 0,
        batch_size: int = 4096,
    ):
        self.n_clusters = n_clusters
        self.mapping = mapping
        self.minibatch = minibatch
        self.n_init = n_init
        self.pca = pca
        self.seed = seed
        self.batch_size = batch_size

    def _validate(self, x: np.ndarray, y: np.ndarray | None = None) -> None:
        if self.mapping not in MAPPINGS:
            raise ConfigError(f"mapping {self.mapping!r} unknown; choose majority or hungarian.")
        if not isinstance(self.n_clusters, int | np.integer) or self.n_clusters < 1:
            raise ConfigError(f"n_clusters must be a positive integer, got {self.n_clusters!r}.")
        if x.ndim != 2:
            raise ConfigError(
                f"KMeansClassifier expects samples as (N, features), got shape {x.shape}."
            )
        if y is not None and len(y) != len(x):
            raise ConfigError(f"{len(x)} samples but {len(y)} labels.")
        if y is not None and self.n_clusters > len(x):
            raise ConfigError(
                f"n_clusters={self.n_clusters} exceeds the {len(x)} training samples."
            )

    def _project(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32)
        if self.pca_components_ is None:
            return x
        return (x - self.pca_mean_) @ self.pca_components_.T

    def fit(self, x: np.ndarray, y: np.ndarray) -> KMeansClassifier:
        self._validate(x, y)
        x = np.asarray(x, dtype=np.float32)
        self.pca_components_ = self.pca_mean_ = None
        if self.pca:
            projection = PCA(self.pca, random_state=self.seed).fit(x)
            self.pca_components_ = projection.components_.astype(np.float32)
            self.pca_mean_ = projection.mean_.astype(np.float32)
        z = self._project(x)
        if self.minibatch:
            model = MiniBatchKMeans(
                self.n_clusters,
                n_init=self.n_init,
                random_state=self.seed,
                batch_size=self.batch_size,
            )
        else:
            model = KMeans(self.n_clusters, n_init=self.n_init, random_state=self.seed)
        clusters = model.fit_predict(z)
        self.centroids_ = model.cluster_centers_.astype(np.float32)
        self.inertia_ = float(model.inertia_)
        self.classes_ = np.unique(y)
        counts = np.zeros((self.n_clusters, len(self.classes_)), dtype=np.int64)
        np.add.at(counts, (clusters, np.searchsorted(self.classes_, y)), 1)
        self.label_counts_ = counts
        self.cluster_labels_ = self.classes_[self._assign(counts)]
        sizes = counts.sum(1)
        self.purity_ = np.divide(counts.max(1), sizes, out=np.zeros(len(sizes)), where=sizes > 0)
        return self

    def _assign(self, counts: np.ndarray) -> np.ndarray:
        majority = counts.argmax(1)
        if self.mapping == "majority":
            return majority
        rows, cols = linear_sum_assignment(-counts)
        assigned = majority.copy()
        assigned[rows] = cols
        return assigned

    def clusters(self, x: np.ndarray) -> np.ndarray:
        """Index of the nearest centroid for every sample."""
        if not hasattr(self, "centroids_"):
            raise ConfigError("KMeansClassifier is not fitted yet; call fit(x, y) first.")
        self._validate(x)
        expected = (
            self.pca_mean_.shape[0] if self.pca_mean_ is not None else self.centroids_.shape[1]
        )
        if x.shape[1] != expected:
            raise ConfigError(f"expected samples with {expected} features, got {x.shape[1]}.")
        z = self._project(x)
        return squared_distances(z, self.centroids_).argmin(1)

    def predict(self, x: np.ndarray) -> np.ndarray:
        clusters = self.clusters(x)
        return self.cluster_labels_[clusters]

    def save(self, path: str | Path) -> Path:
        extra = (
            {}
            if self.pca_components_ is None
            else {"pca_components": self.pca_components_, "pca_mean": self.pca_mean_}
        )
        return write_npz(
            path,
            centroids=self.centroids_,
            cluster_labels=self.cluster_labels_,
            label_counts=self.label_counts_,
            classes=self.classes_,
            purity=self.purity_,
            inertia=np.array(self.inertia_),
            mapping=np.array(self.mapping),
            **extra,
        )

    @classmethod
    def load(cls, path: str | Path) -> KMeansClassifier:
        try:
            with np.load(path, allow_pickle=False) as f:
                model = cls(len(f["centroids"]), str(f["mapping"]))
                model.centroids_, model.cluster_labels_ = f["centroids"], f["cluster_labels"]
                model.label_counts_, model.classes_, model.purity_ = (
                    f["label_counts"],
                    f["classes"],
                    f["purity"],
                )
                model.inertia_ = float(f["inertia"])
                model.pca_components_ = f.get("pca_components")
                model.pca_mean_ = f.get("pca_mean")
        except (OSError, KeyError, ValueError) as exc:
            raise RunError(f"{path}: not a readable KMeans classifier file ({exc}).") from exc
        return model
