"""Which samples a classifier gets right and wrong for one class."""

from __future__ import annotations

import numpy as np


def gallery_indices(
    actual: np.ndarray, predicted: np.ndarray, cls: int, limit: int = 50
) -> dict[str, list[int]]:
    """Split-positions of the first ``limit`` true positives, false positives, false negatives."""
    tp = np.flatnonzero((actual == cls) & (predicted == cls))
    fp = np.flatnonzero((actual != cls) & (predicted == cls))
    fn = np.flatnonzero((actual == cls) & (predicted != cls))
    return {
        "true_positives": tp[:limit].tolist(),
        "false_positives": fp[:limit].tolist(),
        "false_negatives": fn[:limit].tolist(),
        "counts": {
            "true_positives": len(tp),
            "false_positives": len(fp),
            "false_negatives": len(fn),
        },
    }
