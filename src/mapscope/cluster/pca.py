"""Principal components of a dataset: explained variance, loadings and 2-D projections, with
the points coloured by label, by KMeans cluster, and both (where they disagree)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA

from mapscope.cluster.inputs import clustering_bundle
from mapscope.errors import ConfigError
from mapscope.io import write_json
from mapscope.progress import stage
from mapscope.report.cluster import plot_pca
from mapscope.report.display import RichDisplay
from mapscope.report.figures import save_figure
from mapscope.runs.folder import provenance


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


@dataclass
class PCAStudy(RichDisplay):
    dataset: str
    x: np.ndarray
    labels: np.ndarray
    clusters: np.ndarray  # each point's cluster, named by the cluster's majority label
    n_clusters: int
    components: dict[str, np.ndarray]
    feature_names: list[str]
    pairs: list[tuple[int, int]]
    class_names: tuple[str, ...]
    image: bool
    seed: int
    checksums: dict[str, str]

    def summary(self) -> str:
        ratio = self.components["explained_variance_ratio"]
        return (
            "explained variance of the first components: "
            + ", ".join(f"{v:.4f}" for v in ratio[:5])
            + f" (cumulative {ratio[:2].sum():.3f} for two)"
        )

    def figure(self):
        """The explained variance, the loadings (tabular data) or the components as images,
        and scatter plots coloured by label, by cluster and by both."""
        return plot_pca(
            self.components,
            self.x,
            self.labels,
            self.clusters,
            self.feature_names,
            self.pairs,
            self.class_names,
            image_shape=(28, 28) if self.image else None,  # MNIST-like images, flat in x
        )

    def _card(self):
        ratio = self.components["explained_variance_ratio"]
        facts = [
            ("data", f"{self.dataset}, {len(self.x)} samples, {self.n_clusters} clusters"),
            ("explained variance", ", ".join(f"{v:.3f}" for v in ratio[:5])),
        ]
        return f"Principal components of {self.dataset}", facts, self.figure, None


def pca_study(
    dataset: str = "wifi",
    clusters: int | None = None,
    pairs: list[tuple[int, int]] | None = None,
    seed: int = 0,
    data_root: str | Path | None = None,
) -> PCAStudy:
    """WIFI: its training part; image data: the 10000 test images (plenty to look at)."""
    image = dataset != "wifi"
    bundle = clustering_bundle(dataset, seed, data_root=data_root)
    part = "test" if image else "train"
    x, labels = bundle.inputs(part), bundle.labels(part)
    with stage(f"PCA of {len(x)} samples"):
        components = principal_components(x, 10, seed)
    k = bundle.dataset.n_classes if clusters is None else clusters
    if not 1 <= k <= len(x):
        raise ConfigError(f"--clusters must lie in 1..{len(x)}, got {k}.")
    with stage(f"KMeans with {k} clusters"):
        assigned = KMeans(k, n_init=10, random_state=seed).fit_predict(x)
    # colour each cluster by its majority label, so that a point whose colours differ is a mismatch
    counts = np.zeros((k, bundle.dataset.n_classes), dtype=np.int64)
    np.add.at(counts, (assigned, labels), 1)
    assigned = counts.argmax(1)[assigned]
    prefix = "px" if image else "WLAN-"
    names = [f"{prefix}{i}" for i in range(x.shape[1])]
    pairs = [] if image else list(pairs or [])
    for a, b in pairs:
        if not (0 <= a < x.shape[1] and 0 <= b < x.shape[1]):
            raise ConfigError(f"--pairs {a}-{b}: features are 0..{x.shape[1] - 1}.")
    return PCAStudy(
        dataset,
        x,
        labels,
        assigned,
        k,
        components,
        names,
        pairs,
        bundle.dataset.class_names,
        image,
        seed,
        bundle.dataset.checksums,
    )


def write_pca(result: PCAStudy, out: str | Path) -> list[Path]:
    out, c = Path(out), result.components
    fig = result.figure()
    saved = {
        "dataset": result.dataset,
        "samples": len(result.x),
        "explained_variance_ratio": c["explained_variance_ratio"],
        "loadings": None if result.image else c["components"][:3],
        "feature_names": None if result.image else result.feature_names,
        "clusters": result.n_clusters,
        "provenance": provenance(result.checksums, seed=result.seed),
    }
    return [save_figure(fig, out / "pca.png"), write_json(out / "pca.json", saved)]
