"""Squared Euclidean distances from samples to centroids, for every sample at once.

|x - c|^2 = |x|^2 - 2 x.c + |c|^2 turns the (N, K) distance table into one matrix product, which
is what makes nearest-centroid prediction on 70000 images fast.
"""

from __future__ import annotations

import numpy as np


def squared_distances(x: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """(N, K) squared distances; tiny negatives from rounding are clipped to 0."""
    squared = (x * x).sum(1)[:, None] - 2 * x @ centroids.T + (centroids**2).sum(1)[None]
    return np.maximum(squared, 0)
