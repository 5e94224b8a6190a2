"""Clustering speed: the WIFI classify sweep and the MNIST cluster-feature K sweep, each beside the
setting of the original study (MiniBatchKMeans with 500 initialisations) timed in the same run.

Usage: MAPSCOPE_DATA=... python benchmarks/cluster_sweeps.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
from sklearn.cluster import MiniBatchKMeans
from sklearn.metrics import silhouette_score

sys.path.insert(0, str(Path(__file__).parent))
from _common import data_root, table  # noqa: E402

from mapscope.cluster.classify import classify_sweep  # noqa: E402
from mapscope.data.bundle import DataBundle  # noqa: E402
from mapscope.data.features import ClusterDistances  # noqa: E402


def main() -> None:
    rows = []
    began = time.perf_counter()
    classify_sweep("wifi", [4, 5, 6, 7, 8, 9, 10, 11, 25], "all", data_root=data_root())
    rows.append(
        ["WIFI classify sweep, 9 K values (incl. RF + KNN)", time.perf_counter() - began, "<= 5"]
    )

    x = DataBundle.create("mnist", "unit", data_root=data_root()).inputs("train")
    ks = list(range(10, 171, 10))
    sample = np.random.default_rng(0).choice(len(x), 5000, replace=False)
    began = time.perf_counter()
    for k in ks:
        model = ClusterDistances(k).fit(x)
        silhouette_score(x[sample], model.clusters(x[sample]))
    rows.append(
        [
            f"MNIST K sweep {ks[0]}..{ks[-1]} ({len(ks)} K) with silhouette",
            time.perf_counter() - began,
            "<= 180",
        ]
    )
    began = time.perf_counter()
    MiniBatchKMeans(100, n_init=25, random_state=0, batch_size=1024).fit(x)
    per_init = (time.perf_counter() - began) / 25
    rows.append(
        [
            "original setting: one K=100 with n_init=500 (25 timed, extrapolated)",
            per_init * 500,
            "32-60 per K (original study)",
        ]
    )
    print(table(["task", "seconds", "target / original"], rows))


if __name__ == "__main__":
    main()
