"""Turning raw samples into network inputs.

Scaling choices (``scaling``): ``standard`` (per-feature StandardScaler fitted on the training
part only, as in the original experiments), ``image`` (each sample to mean 0, std 1), ``unit``
(pixels to [0, 1]) and ``none``. The fitted scaler is saved with the run so that later analysis
rebuilds exactly the same inputs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mapscope.errors import ConfigError, RunError
from mapscope.io import read_arrays, write_npz

SCALINGS = ("standard", "image", "unit", "none")


class Standardizer:
    """Per-feature standardisation like scikit-learn's StandardScaler (zero std -> scale 1)."""

    def fit(self, x: np.ndarray) -> Standardizer:
        flat = _flatten(x).astype(np.float64)
        self.mean_ = flat.mean(axis=0).astype(np.float32)
        std = flat.std(axis=0)
        self.scale_ = np.where(std > 0, std, 1.0).astype(np.float32)
        return self

    def transform(self, x: np.ndarray) -> np.ndarray:
        flat = _flatten(x).astype(np.float32)
        if flat.shape[1] != self.mean_.shape[0]:
            raise ConfigError(
                f"Standardizer was fitted on {self.mean_.shape[0]} features, got {flat.shape[1]}."
            )
        return ((flat - self.mean_) / self.scale_).reshape(x.shape)

    def save(self, path: str | Path) -> Path:
        return write_npz(path, mean=self.mean_, scale=self.scale_)

    @classmethod
    def load(cls, path: str | Path) -> Standardizer:
        """A saved scaler, checked: finite means and finite positive scales of one shape."""
        f = read_arrays(path, {"mean": ("float", 1), "scale": ("float", 1)}, what="scaler file")
        if f["mean"].shape != f["scale"].shape or not (f["scale"] > 0).all():
            raise RunError(
                f"{path}: damaged scaler: 'mean' and 'scale' must have one length and every "
                "scale must be > 0."
            )
        obj = cls()
        obj.mean_, obj.scale_ = f["mean"].astype(np.float32), f["scale"].astype(np.float32)
        return obj


def per_image_standardize(x: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Each sample to mean 0 and standard deviation 1 (what the OIP search also does)."""
    flat = _flatten(x).astype(np.float32)
    flat = (flat - flat.mean(axis=1, keepdims=True)) / (flat.std(axis=1, keepdims=True) + eps)
    return flat.reshape(x.shape)


def one_hot(labels: np.ndarray, n_classes: int) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
        raise ConfigError(
            f"labels must lie in 0..{n_classes - 1}, got {labels.min()}..{labels.max()}."
        )
    out = np.zeros((len(labels), n_classes), dtype=np.float32)
    out[np.arange(len(labels)), labels] = 1.0
    return out


def prepare_inputs(
    x: np.ndarray, scaling: str, scaler: Standardizer | None = None, layout: str = "flat"
) -> np.ndarray:
    """Scale samples and arrange them as ``flat`` (N, F), ``nchw`` (N,1,28,28) or ``nhwc``."""
    if scaling not in SCALINGS:
        raise ConfigError(f"scaling {scaling!r} unknown; choose one of {', '.join(SCALINGS)}.")
    if scaling == "standard":
        if scaler is None:
            raise ConfigError(
                "scaling 'standard' needs a Standardizer fitted on the training part."
            )
        out = scaler.transform(x)
    elif scaling == "image":
        out = per_image_standardize(x)
    elif scaling == "unit":
        out = x.astype(np.float32) / 255.0
    else:
        out = x.astype(np.float32)
    return arrange(out, layout)


def arrange(x: np.ndarray, layout: str) -> np.ndarray:
    if layout == "flat":
        return np.ascontiguousarray(_flatten(x), dtype=np.float32)
    if x.ndim not in (3, 4):
        raise ConfigError(
            f"layout {layout!r} needs images (N, H, W) or (N, H, W, 3), got shape {x.shape}."
        )
    if x.ndim == 3:
        x = x[..., None]  # one channel
    if layout == "nchw":
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2), dtype=np.float32)
    if layout == "nhwc":
        return np.ascontiguousarray(x, dtype=np.float32)
    raise ConfigError(f"layout {layout!r} unknown; choose flat, nchw or nhwc.")


def _flatten(x: np.ndarray) -> np.ndarray:
    return x.reshape(len(x), -1)
