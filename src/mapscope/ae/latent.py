"""Where an autoencoder's codes live, in numbers: the latent study as a pure function of codes.

``study(...)`` takes the encoded training and test images (and their labels) and vectors drawn
by the samplers, and returns a ``LatentStudy``: per-component distribution and normality, where
the cloud sits (its mean's norm against its spread, the origin's Mahalanobis distance), the
radius distributions of the data and of every sampler (the thin-shell argument in numbers),
correlations and principal axes, and fragmentation: how far each sampler's vectors land from
the nearest encoded training image, measured against how far a held-out test image's code lies
from its nearest training code.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import stats
from sklearn.decomposition import PCA
from sklearn.neighbors import NearestNeighbors

QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)
EMPTY_QUANTILE = 0.99  # "in empty space": farther from the data than 99 % of real test codes


@dataclass
class LatentStudy:
    """Everything ``ae latent`` reports; arrays for the figures, ``to_dict`` for the JSON."""

    mean: np.ndarray  # per component
    std: np.ndarray
    skewness: np.ndarray
    kurtosis: np.ndarray  # excess kurtosis (0 for a normal)
    normaltest: np.ndarray  # D'Agostino-Pearson K^2 per component
    ks_distance: np.ndarray  # Kolmogorov-Smirnov distance to the fitted normal
    mean_norm: float
    spread: float  # root mean squared distance of the codes from their mean
    origin_mahalanobis: float
    data_mahalanobis: np.ndarray  # quantiles of the codes' own Mahalanobis radii
    radii: dict[str, np.ndarray]  # "data" and each sampler: norms of the vectors
    correlation: np.ndarray
    explained_variance_ratio: np.ndarray
    axes: np.ndarray  # principal semi-axes (standard deviations along the PCA axes)
    pca_train: np.ndarray  # (n, 2) projection of (a sample of) the training codes
    pca_labels: np.ndarray
    nearest: dict[str, np.ndarray]  # distances to the nearest training code: "test" and samplers
    empty_threshold: float
    class_coverage: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    class_names: tuple[str, ...] = ()

    @property
    def latent(self) -> int:
        return len(self.mean)

    def fragmentation(self) -> dict[str, dict[str, float]]:
        """Per source: median distance to the nearest training code relative to the test
        codes' median, and the share that falls into empty space."""
        base = float(np.median(self.nearest["test"]))
        return {
            name: {
                "median_nearest": float(np.median(d)),
                "relative_to_test": float(np.median(d) / base) if base > 0 else float("inf"),
                "share_in_empty_space": float(np.mean(d > self.empty_threshold)),
            }
            for name, d in self.nearest.items()
        }

    def to_dict(self) -> dict:
        q = [f"q{int(p * 100):02d}" for p in QUANTILES]
        return {
            "latent": self.latent,
            "components": [
                {
                    "index": i,
                    "mean": float(self.mean[i]),
                    "std": float(self.std[i]),
                    "skewness": float(self.skewness[i]),
                    "excess_kurtosis": float(self.kurtosis[i]),
                    "normaltest_k2": float(self.normaltest[i]),
                    "ks_distance_to_normal": float(self.ks_distance[i]),
                }
                for i in range(self.latent)
            ],
            "cloud": {
                "mean_norm": self.mean_norm,
                "spread": self.spread,
                "mean_norm_over_spread": self.mean_norm / self.spread if self.spread else None,
                "origin_mahalanobis": self.origin_mahalanobis,
                "data_mahalanobis": dict(zip(q, map(float, self.data_mahalanobis), strict=True)),
            },
            "radii": {
                name: {
                    **dict(zip(q, map(float, np.quantile(r, QUANTILES)), strict=True)),
                    "mean": float(r.mean()),
                }
                for name, r in self.radii.items()
            },
            "pca": {
                "explained_variance_ratio": self.explained_variance_ratio.tolist(),
                "semi_axes": self.axes.tolist(),
            },
            "correlation": {
                "largest_off_diagonal": float(_largest_off_diagonal(self.correlation)),
                "matrix": self.correlation.round(4).tolist(),
            },
            "fragmentation": {
                "empty_threshold": self.empty_threshold,
                "by_source": self.fragmentation(),
                "by_class": self.class_coverage,
            },
        }

    def summary(self) -> str:
        frag = self.fragmentation()
        lines = [
            f"latent space of {self.latent} components",
            f"  mean vector norm {self.mean_norm:.3g} against a spread of {self.spread:.3g}; the "
            f"origin lies {self.origin_mahalanobis:.2f} Mahalanobis units from the mean "
            f"(the codes themselves: median {self.data_mahalanobis[2]:.2f})",
            f"  KS distance to a normal per component: median {np.median(self.ks_distance):.3f}, "
            f"largest {self.ks_distance.max():.3f}",
            f"  first two PCA axes explain {self.explained_variance_ratio[:2].sum():.1%} of the "
            "variance",
            "  source       median |z|   median nearest (x test)   in empty space",
        ]
        for name, r in self.radii.items():
            f = frag.get(name) or frag["test"]  # the data's row: its held-out test codes
            label = "data (test)" if name == "data" else name
            lines.append(
                f"  {label:<12} {np.median(r):10.3g}   {f['median_nearest']:10.3g} "
                f"({f['relative_to_test']:6.2f}x)        {f['share_in_empty_space']:7.1%}"
            )
        return "\n".join(lines)


def study(
    codes: np.ndarray,
    labels: np.ndarray,
    test_codes: np.ndarray,
    samples: dict[str, np.ndarray],
    class_names: tuple[str, ...] = (),
    seed: int = 0,
    plot_points: int = 5000,
) -> LatentStudy:
    """The latent study of ``codes`` (training images), see the module docstring."""
    codes = codes.astype(np.float64)
    mean, std = codes.mean(axis=0), codes.std(axis=0)
    safe = np.where(std > 0, std, 1.0)
    standardised = (codes - mean) / safe
    covariance = np.cov(codes, rowvar=False).reshape(codes.shape[1], codes.shape[1])
    precision = np.linalg.pinv(covariance)
    centred = codes - mean
    data_mahalanobis = np.sqrt(np.einsum("ni,ij,nj->n", centred, precision, centred))
    pca = PCA(random_state=seed).fit(codes)
    rng = np.random.default_rng(seed)
    shown = rng.choice(len(codes), size=min(plot_points, len(codes)), replace=False)
    index = NearestNeighbors(n_neighbors=1).fit(codes)
    nearest, nearest_rows = {}, {}
    for name, points in {"test": test_codes, **samples}.items():
        distance, row = index.kneighbors(points.astype(np.float64))
        nearest[name], nearest_rows[name] = distance[:, 0], row[:, 0]
    threshold = float(np.quantile(nearest["test"], EMPTY_QUANTILE))
    coverage = {}
    if len(class_names) > 1:
        for name, rows in nearest_rows.items():
            assigned = labels[rows]
            coverage[name] = {
                class_names[c]: {
                    "share": float(np.mean(assigned == c)),
                    "in_empty_space": float(np.mean(nearest[name][assigned == c] > threshold))
                    if np.any(assigned == c)
                    else None,
                }
                for c in range(len(class_names))
            }
    with np.errstate(invalid="ignore", divide="ignore"):
        correlation = np.nan_to_num(np.corrcoef(codes, rowvar=False))
    return LatentStudy(
        mean=mean,
        std=std,
        skewness=stats.skew(codes, axis=0),
        kurtosis=stats.kurtosis(codes, axis=0),
        normaltest=np.nan_to_num(stats.normaltest(standardised, axis=0).statistic),
        ks_distance=ks_distance_to_normal(standardised),
        mean_norm=float(np.linalg.norm(mean)),
        spread=float(np.sqrt(np.trace(covariance))),
        origin_mahalanobis=float(np.sqrt(mean @ precision @ mean)),
        data_mahalanobis=np.quantile(data_mahalanobis, QUANTILES),
        radii={
            "data": np.linalg.norm(codes, axis=1),
            **{k: np.linalg.norm(v, axis=1) for k, v in samples.items()},
        },
        correlation=np.atleast_2d(correlation),
        explained_variance_ratio=pca.explained_variance_ratio_,
        axes=np.sqrt(pca.explained_variance_),
        pca_train=pca.transform(codes[shown])[:, :2],
        pca_labels=labels[shown],
        nearest=nearest,
        empty_threshold=threshold,
        class_coverage=coverage,
        class_names=tuple(class_names),
    )


def ks_distance_to_normal(values: np.ndarray) -> np.ndarray:
    """(D,) the Kolmogorov-Smirnov distance of each column from the standard normal: the
    largest gap between its empirical CDF and the normal CDF (``scipy.stats.kstest``'s
    statistic, without the p-value that costs it a second on 60000 codes)."""
    ordered = np.sort(values, axis=0)
    n = len(ordered)
    cdf = stats.norm.cdf(ordered)
    steps = np.arange(1, n + 1)[:, None] / n
    return np.maximum((steps - cdf).max(0), (cdf - (steps - 1 / n)).max(0))


def _largest_off_diagonal(matrix: np.ndarray) -> float:
    if len(matrix) < 2:
        return 0.0
    off = np.abs(matrix - np.diag(np.diag(matrix)))
    return float(off.max())
