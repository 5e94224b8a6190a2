"""KMeans as a classifier: cluster the training samples, then name each cluster after its labels.

``mapping="majority"`` gives every cluster the label that contributes most of its samples (several
clusters may share a label); ``"hungarian"`` assigns labels one-to-one so that the matched samples
are as many as possible (clusters left over when K > classes fall back to their majority).

A scikit-learn estimator: parameters in ``__init__``, validated in ``fit``; learned state ends in
``_``; it clones, pickles, and goes into ``Pipeline``, ``GridSearchCV`` and ``cross_val_score``.
"""

from __future__ import annotations

import numbers

import numpy as np
from scipy.optimize import linear_sum_assignment
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.cluster import KMeans, MiniBatchKMeans
from sklearn.decomposition import PCA
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from mapscope.errors import ConfigError
from mapscope.metrics import squared_distances

MAPPINGS = ("majority", "hungarian")


class KMeansClassifier(ClassifierMixin, BaseEstimator):
    """Nearest-centroid classification with centroids found by (MiniBatch)KMeans.

    Parameters
    ----------
    n_clusters : number of clusters K (may exceed the number of classes).
    mapping : "majority" or "hungarian", how clusters get their labels (module docstring).
    minibatch : use MiniBatchKMeans (fast on 60000 images) instead of KMeans.
    n_init : KMeans restarts; the best inertia wins.
    pca : cluster on the first ``pca`` principal components (None: on the raw features).
    random_state : seed of KMeans and PCA.
    batch_size : MiniBatchKMeans batch size.
    """

    def __init__(
        self,
        n_clusters: int = 8,
        mapping: str = "majority",
        minibatch: bool = False,
        n_init: int = 10,
        pca: int | None = None,
        random_state: int | None = 0,
        batch_size: int = 4096,
    ):
        self.n_clusters = n_clusters
        self.mapping = mapping
        self.minibatch = minibatch
        self.n_init = n_init
        self.pca = pca
        self.random_state = random_state
        self.batch_size = batch_size

    def _check_params(self, n_samples: int, n_features: int) -> None:
        if self.mapping not in MAPPINGS:
            raise ConfigError(
                f"mapping={self.mapping!r} unknown; choose one of {', '.join(MAPPINGS)}."
            )
        for name in ("n_clusters", "n_init", "batch_size"):
            value = getattr(self, name)
            if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}.")
        if self.n_clusters > n_samples:
            raise ConfigError(
                f"n_clusters={self.n_clusters} exceeds the n_samples={n_samples} training samples."
            )
        if self.pca is not None and (
            not isinstance(self.pca, numbers.Integral)
            or not 1 <= self.pca <= min(n_samples, n_features)
        ):
            raise ConfigError(
                f"pca must be None or an integer in 1..{min(n_samples, n_features)} "
                f"(at most the samples and features), got {self.pca!r}."
            )

    def fit(self, X, y) -> KMeansClassifier:
        X, y = validate_data(self, X, y, dtype=[np.float32, np.float64])
        check_classification_targets(y)
        self._check_params(*X.shape)
        x = X.astype(np.float32)
        self.pca_components_ = self.pca_mean_ = None
        if self.pca:
            projection = PCA(self.pca, random_state=self.random_state).fit(x)
            self.pca_components_ = projection.components_.astype(np.float32)
            self.pca_mean_ = projection.mean_.astype(np.float32)
        z = self._project(x)
        if self.minibatch:
            model = MiniBatchKMeans(
                self.n_clusters,
                n_init=self.n_init,
                random_state=self.random_state,
                batch_size=self.batch_size,
            )
        else:
            model = KMeans(self.n_clusters, n_init=self.n_init, random_state=self.random_state)
        clusters = model.fit_predict(z)
        self.centroids_ = model.cluster_centers_.astype(np.float32)
        self.inertia_ = float(model.inertia_)
        self.classes_, codes = np.unique(y, return_inverse=True)
        counts = np.zeros((self.n_clusters, len(self.classes_)), dtype=np.int64)
        np.add.at(counts, (clusters, codes), 1)
        self.label_counts_ = counts
        self.cluster_labels_ = self.classes_[self._assign(counts)]
        sizes = counts.sum(1)
        self.purity_ = np.divide(counts.max(1), sizes, out=np.zeros(len(sizes)), where=sizes > 0)
        return self

    def _project(self, x: np.ndarray) -> np.ndarray:
        if self.pca_components_ is None:
            return x
        return (x - self.pca_mean_) @ self.pca_components_.T

    def _assign(self, counts: np.ndarray) -> np.ndarray:
        majority = counts.argmax(1)
        if self.mapping == "majority":
            return majority
        rows, cols = linear_sum_assignment(-counts)
        assigned = majority.copy()
        assigned[rows] = cols
        return assigned

    def clusters(self, X) -> np.ndarray:
        """Index of the nearest centroid for every sample."""
        check_is_fitted(self, "centroids_")
        X = validate_data(self, X, reset=False, dtype=[np.float32, np.float64])
        return squared_distances(self._project(X.astype(np.float32)), self.centroids_).argmin(1)

    def predict(self, X) -> np.ndarray:
        nearest = self.clusters(X)  # checks that the model is fitted
        return self.cluster_labels_[nearest]
