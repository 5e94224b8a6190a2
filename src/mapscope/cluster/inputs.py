"""The inputs every clustering command uses, chosen in one place.

Euclidean KMeans is sensitive to feature scales. The seven WIFI signal strengths share one unit
(dBm), so they stay raw; image pixels are scaled to [0, 1] so that centroids stay images.
"""

from __future__ import annotations

from pathlib import Path

from mapscope.data.bundle import DataBundle


def clustering_scaling(dataset: str) -> str:
    return "none" if dataset == "wifi" else "unit"


def clustering_bundle(
    dataset: str,
    seed: int = 0,
    split_mode: str = "canonical",
    test_size: int | None = None,
    data_root: str | Path | None = None,
) -> DataBundle:
    return DataBundle.create(
        dataset, clustering_scaling(dataset), split_mode, seed, test_size, data_root
    )
