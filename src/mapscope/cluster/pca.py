"""Principal components of a dataset: explained variance, loadings and 2-D projections."""

from __future__ import annotations

import numpy as np
from sklearn.decomposition import PCA


def principal_components(
    x: np.ndarray, n_components: int | None = None, seed: int = 0
) -> dict[str, np.ndarray]:
    n_components = min(n_components or x.shape[1], x.shape[1], len(x))
    model = PCA(n_components, random_state=seed).fit(x)
    return {
        "explained_variance_ratio": model.explained_variance_ratio_,
        "components": model.components_,
        "projection": model.transform(x),
    }
