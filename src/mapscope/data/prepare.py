"""Turning raw samples into network inputs.

Scaling choices (``scaling``): ``standard`` (per-feature StandardScaler fitted on the training
part only, as in the original experiments), ``image`` (each sample to mean 0, std 1), ``unit``
(pixels to [0, 1]) and ``none``. The fitted scaler is saved with the run so that later analysis
rebuilds exactly the same inputs.

A user's own PyTorch module was trained with its own preprocessing; two more choices describe
it: ``normalize`` (torchvision's ``ToTensor`` then ``Normalize(mean, std)`` per channel, see
``ChannelNormalizer``) and ``custom`` (a function of the [0, 1] NCHW batch, ``FunctionScaler``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mapscope.errors import ConfigError, RunError
from mapscope.io import read_arrays, write_npz

SCALINGS = ("standard", "image", "unit", "none")  # what a run folder may hold
# the scalings that treat every pixel alike, under which a moved image stays valid (augment.py)
SHIFTED_SCALINGS = ("unit", "image", "none")
FITTED = ("standard", "normalize", "custom")  # the scalings that go through a scaler object


class Standardizer:
    """Per-feature standardisation like scikit-learn's StandardScaler (zero std -> scale 1)."""

    def fit(self, x: np.ndarray) -> Standardizer:
        flat = _flatten(x)
        if flat.dtype == np.uint8:  # pixels: exact integer sums, 10x faster than float64 passes
            n = len(flat)
            total = flat.sum(axis=0, dtype=np.int64)
            squares = np.einsum("ij,ij->j", flat, flat, dtype=np.int64)
            mean = total / n
            std = np.sqrt(np.maximum(squares / n - mean * mean, 0.0))
        else:
            flat = flat.astype(np.float64)
            mean, std = flat.mean(axis=0), flat.std(axis=0)
        self.mean_ = mean.astype(np.float32)
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


class ChannelNormalizer:
    """torchvision's ``ToTensor()`` + ``Normalize(mean, std)``: pixels to [0, 1], then per
    channel ``(x - mean[c]) / std[c]``. One mean and std serve every channel of a grey image."""

    def __init__(self, mean, std):
        self.mean_ = np.atleast_1d(np.asarray(mean, dtype=np.float32))
        self.scale_ = np.atleast_1d(np.asarray(std, dtype=np.float32))
        if self.mean_.shape != self.scale_.shape or self.mean_.ndim != 1:
            raise ConfigError(
                f"normalize needs as many means as standard deviations, got {self.mean_.size} "
                f"and {self.scale_.size}."
            )
        if not (np.isfinite(self.mean_).all() and (self.scale_ > 0).all()):
            raise ConfigError("normalize needs finite means and standard deviations > 0.")

    def transform(self, x: np.ndarray) -> np.ndarray:
        channels = x.shape[3] if x.ndim == 4 else 1
        if self.mean_.size not in (1, channels):
            raise ConfigError(
                f"normalize has {self.mean_.size} means but the images have {channels} "
                "channel(s); give one mean and std per channel."
            )
        unit = x.astype(np.float32) / 255.0
        if x.ndim == 4:  # (N, H, W, C): broadcast over the last axis
            return (unit - self.mean_) / self.scale_
        return (unit - self.mean_[0]) / self.scale_[0]

    def __repr__(self) -> str:
        return f"normalize:{_numbers(self.mean_)}/{_numbers(self.scale_)}"


class FunctionScaler:
    """A user's preprocessing function: it receives the [0, 1] images as a float32 (N, C, H, W)
    array and returns an array of the same shape."""

    def __init__(self, function):
        if not callable(function):
            raise ConfigError(f"preprocess must be a scaling name or a function, got {function!r}.")
        self.function = function

    def transform(self, x: np.ndarray) -> np.ndarray:
        nchw = arrange(x.astype(np.float32) / 255.0, "nchw")
        out = np.asarray(self.function(nchw), dtype=np.float32)
        if out.shape != nchw.shape:
            raise ConfigError(
                f"the preprocess function returned shape {out.shape}; expected {nchw.shape}."
            )
        out = out.transpose(0, 2, 3, 1)  # back to the stored layout; ``arrange`` places it
        return out[..., 0] if x.ndim == 3 else out

    def __repr__(self) -> str:
        return f"custom:{getattr(self.function, '__name__', 'function')}"


def parse_preprocess(text: str) -> tuple[str, ChannelNormalizer | None]:
    """``--preprocess``: a scaling name or ``normalize:MEAN[,MEAN..]/STD[,STD..]``."""
    text = text.strip()
    if text in SCALINGS:
        return text, None
    if text.startswith("normalize:") and text.count("/") == 1:
        means, stds = text[len("normalize:") :].split("/")
        try:
            mean = [float(v) for v in means.split(",")]
            std = [float(v) for v in stds.split(",")]
        except ValueError:
            mean = std = None
        if mean and std:
            return "normalize", ChannelNormalizer(mean, std)
    raise ConfigError(
        f"--preprocess {text!r} unknown; choose {', '.join(SCALINGS)} or "
        "normalize:MEAN/STD per channel, e.g. normalize:0.1307/0.3081 (torchvision's Normalize "
        "after ToTensor) or normalize:0.485,0.456,0.406/0.229,0.224,0.225."
    )


def _numbers(values: np.ndarray) -> str:
    return ",".join(f"{v:g}" for v in values)


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
    if scaling not in SCALINGS + FITTED:
        raise ConfigError(f"scaling {scaling!r} unknown; choose one of {', '.join(SCALINGS)}.")
    if scaling in FITTED:
        if scaler is None:
            raise ConfigError(
                f"scaling {scaling!r} needs its scaler (standard: a Standardizer fitted on the "
                "training part)."
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
