"""Small PNGs for the atlas, straight from arrays with Pillow (no figures: thousands of tiles).

Images keep their native resolution; the page scales them up with ``image-rendering:
pixelated`` so a 28x28 OIP stays sharp and each file stays a few hundred bytes. The smallest
pictures are inlined as ``data:`` URIs, which saves a file per thumbnail.
"""

from __future__ import annotations

import base64
import io

import numpy as np
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


def data_uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def raw_image(image: np.ndarray) -> bytes:
    """A dataset image as stored (uint8 grey or RGB), unchanged."""
    pixels = np.asarray(image)
    if pixels.dtype != np.uint8:
        pixels = _scaled(pixels)
    return png(pixels)


def grey(values: np.ndarray, lo: float | None = None, hi: float | None = None) -> bytes:
    """Values mapped linearly to grey (min -> black, max -> white unless lo/hi given)."""
    return png(_scaled(values, lo, hi))


def contrast(values: np.ndarray) -> bytes:
    """Grey with the 2nd..98th percentiles stretched to the full range: faint structure shows."""
    lo, hi = np.percentile(values, [2, 98])
    return png(_scaled(values, float(lo), float(hi)))


def colour(values: np.ndarray, cmap: str = "magma", symmetric: bool = False) -> bytes:
    """Values through a matplotlib colormap; ``symmetric`` centres zero (for signed maps)."""
    from matplotlib import colormaps

    values = np.asarray(values, dtype=np.float64)
    if symmetric:
        bound = max(float(np.abs(values).max()), 1e-12)
        levels = _scaled(values, -bound, bound)
    else:
        levels = _scaled(values)
    rgb = (colormaps[cmap](levels / 255.0)[..., :3] * 255).round().astype(np.uint8)
    return png(rgb)


def strip(frames: np.ndarray, pad: int = 1) -> bytes:
    """Frames (k, H, W) or colour (k, H, W, 3) side by side on one shared scale, ``pad`` white
    pixels between."""
    frames = _scaled(frames)
    k, h, w = frames.shape[:3]
    canvas = np.full((h, k * (w + pad) - pad, *frames.shape[3:]), 255, dtype=np.uint8)
    for i, frame in enumerate(frames):
        canvas[:, i * (w + pad) : i * (w + pad) + w] = frame
    return png(canvas)
