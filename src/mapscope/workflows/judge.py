"""Judging generated images with a classifier trained on the same data.

A generator's pictures are judged as the GAN literature judges them, with our own CNN in the
role of the Inception network: how sure the classifier is (mean top probability), which classes
the images are taken for (does a sampler cover all ten digits?), and the Fréchet distance
between the classifier's penultimate-layer features of the generated images and of real test
images (Heusel et al. 2017). Reconstructions and real training images, judged the same way,
give the floor a generator can hope for.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from mapscope.inspect.taps import layer_names, layer_outputs


@dataclass(frozen=True)
class Judgement:
    source: str
    n: int
    mean_top_probability: float
    class_counts: np.ndarray
    frechet_distance: float

    def classes_covered(self, at_least: float = 0.02) -> int:
        """Classes that receive at least ``at_least`` of the images."""
        return int(np.sum(self.class_counts >= at_least * self.n))

    def to_dict(self, class_names: tuple[str, ...]) -> dict:
        return {
            "n": self.n,
            "mean_top_probability": self.mean_top_probability,
            "classes_covered": self.classes_covered(),
            "frechet_distance": self.frechet_distance,
            "class_histogram": {
                name: int(c) for name, c in zip(class_names, self.class_counts, strict=True)
            },
        }


class Judge:
    """A classifier ``net`` (class scores out) and ``prepare``, which turns pixel images
    (N, C, H, W) in [0, 1] into the classifier's inputs. ``fit(real)`` takes the reference
    features of real images; ``judge(name, images)`` scores a set."""

    def __init__(
        self,
        net: nn.Module,
        prepare: Callable[[np.ndarray], np.ndarray],
        feature_layer: str | None = None,
    ):
        self.net = net
        self.prepare = prepare
        names = layer_names(net)
        self.output_layer = names[-1]
        self.feature_layer = feature_layer or names[-2]

    def _outputs(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        out = layer_outputs(self.net, self.prepare(images), [self.feature_layer, self.output_layer])
        features = out[self.feature_layer].reshape(len(images), -1).astype(np.float64)
        probabilities = torch.softmax(torch.from_numpy(out[self.output_layer]), 1).numpy()
        return features, probabilities

    def fit(self, real: np.ndarray) -> Judge:
        features, _ = self._outputs(real)
        self.mean_, self.covariance_ = features.mean(0), np.cov(features, rowvar=False)
        return self

    def judge(self, source: str, images: np.ndarray) -> Judgement:
        features, probabilities = self._outputs(images)
        counts = np.bincount(probabilities.argmax(1), minlength=probabilities.shape[1])
        return Judgement(
            source=source,
            n=len(images),
            mean_top_probability=float(probabilities.max(1).mean()),
            class_counts=counts,
            frechet_distance=frechet_distance(
                features.mean(0), np.cov(features, rowvar=False), self.mean_, self.covariance_
            ),
        )


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """Fréchet distance between two Gaussians: |mu1 - mu2|^2 + Tr(S1 + S2 - 2 (S1 S2)^1/2).

    The trace of the matrix root is taken from the eigenvalues of the symmetric
    S1^1/2 S2 S1^1/2, which has the same spectrum as S1 S2 and, unlike a general ``sqrtm``,
    stays real for the nearly singular covariances of narrow features."""
    values, vectors = np.linalg.eigh(sigma1)
    root1 = (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T
    middle = np.linalg.eigvalsh(root1 @ sigma2 @ root1)
    trace_root = np.sqrt(np.clip(middle, 0, None)).sum()
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * trace_root)
