"""Small PNGs for the atlas, straight from arrays with Pillow (no figures: thousands of tiles).

Images keep their native resolution; the page scales them up with ``image-rendering:
pixelated`` so a 28x28 OIP stays sharp and each file stays a few hundred bytes. The smallest
pictures are inlined as ``data:`` URIs, which saves a file per thumbnail.
"""

from __future__ import annotations

import base64
import functools
import io

import numpy as np
from markupsafe import Markup
from PIL import Image


def _scaled(values: np.ndarray, lo: float | None = None, hi: float | None = None) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    lo = float(values.min()) if lo is None else lo
    hi = float(values.max()) if hi is None else hi
    if hi - lo <= 1e-12:
        return np.zeros(values.shape, dtype=np.uint8)
    return (np.clip((values - lo) / (hi - lo), 0, 1) * 255).round().astype(np.uint8)


def png(pixels: np.ndarray) -> bytes:
    """PNG bytes of an (H, W) uint8 grey or (H, W, 3|4) uint8 colour array."""
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels)).save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()


def data_uri(data: bytes) -> Markup:
    """A PNG as a ``data:`` URI; marked safe for Jinja2 (base64 holds nothing to escape, and
    escaping thousands of long strings costs a second per site)."""
    return Markup("data:image/png;base64," + base64.b64encode(data).decode("ascii"))


def raw_pixels(image: np.ndarray) -> np.ndarray:
    """A dataset image as uint8: unchanged when stored so, else stretched to 0..255."""
    pixels = np.asarray(image)
    return pixels if pixels.dtype == np.uint8 else _scaled(pixels)


def raw_image(image: np.ndarray) -> bytes:
    """A dataset image as stored (uint8 grey or RGB), unchanged."""
    return png(raw_pixels(image))


def grey(values: np.ndarray, lo: float | None = None, hi: float | None = None) -> bytes:
    """Values mapped linearly to grey (min -> black, max -> white unless lo/hi given)."""
    return png(_scaled(values, lo, hi))


def contrast(values: np.ndarray) -> bytes:
    """Grey with the 2nd..98th percentiles stretched to the full range: faint structure shows."""
    lo, hi = np.percentile(values, [2, 98])
    return png(_scaled(values, float(lo), float(hi)))


def colour(
    values: np.ndarray,
    cmap: str = "magma",
    symmetric: bool = False,
    lo: float | None = None,
    hi: float | None = None,
) -> bytes:
    """Values through a matplotlib colormap between ``lo`` and ``hi`` (default: their range;
    ``symmetric`` centres zero, for signed maps, at +-``hi`` or the largest magnitude)."""
    values = np.asarray(values, dtype=np.float64)
    if symmetric:
        bound = max(float(np.abs(values).max()) if hi is None else hi, 1e-12)
        levels = _scaled(values, -bound, bound)
    else:
        levels = _scaled(values, lo, hi)
    return png(colour_table(cmap)[levels])


@functools.cache
def colour_table(cmap: str) -> np.ndarray:
    """(256, 3) uint8: a matplotlib colormap as a lookup table."""
    from matplotlib import colormaps

    return (colormaps[cmap](np.linspace(0, 1, 256))[:, :3] * 255).round().astype(np.uint8)


def signed(values: np.ndarray, bound: float) -> bytes:
    """Signed values around zero: through RdBu_r for (H, W); a colour change (H, W, 3) as
    mid-grey plus the change of each channel (-bound -> 0, +bound -> 255)."""
    values = np.asarray(values, dtype=np.float64)
    if values.ndim == 2:
        return colour(values, "RdBu_r", symmetric=True, hi=bound)
    return png(_scaled(values, -bound, bound))


def colour_bar(cmap: str) -> bytes:
    """A 64x1 strip of a colormap, low to high, for a legend beside the pictures that use it."""
    return colour(np.linspace(0.0, 1.0, 64)[None, :], cmap, lo=0.0, hi=1.0)


def strip(frames: np.ndarray, pad: int = 1) -> bytes:
    """Frames (k, H, W) or colour (k, H, W, 3) side by side on one shared scale, ``pad`` white
    pixels between."""
    frames = _scaled(frames)
    k, h, w = frames.shape[:3]
    canvas = np.full((h, k * (w + pad) - pad, *frames.shape[3:]), 255, dtype=np.uint8)
    for i, frame in enumerate(frames):
        canvas[:, i * (w + pad) : i * (w + pad) + w] = frame
    return png(canvas)
