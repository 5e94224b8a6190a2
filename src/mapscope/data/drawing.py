"""A hand drawing made to look like an MNIST digit before a network reads it.

MNIST's digits were size-normalised to fit a 20x20 box (aspect ratio kept) and then placed in
the 28x28 frame so that their centre of mass sits at the centre (LeCun, Cortes and Burges). A
digit drawn in a corner, or at another size, is a different input to a network trained on
those; the live app and a notebook user centre a drawing with this one function.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

# the fraction of the frame the digit's longer side fills in MNIST (20 of 28 pixels)
BOX_FRACTION = 20 / 28
# pixels fainter than this are paper, not ink, when the digit's extent is measured
INK_LEVEL = 8


def centre_like_mnist(pixels: np.ndarray) -> np.ndarray:
    """(H, W) uint8, bright ink on dark paper -> the same size, digit scaled into the MNIST
    box and shifted so that its centre of mass is the frame's centre. Blank input comes back
    unchanged."""
    pixels = np.asarray(pixels, dtype=np.uint8)
    height, width = pixels.shape
    rows, cols = np.nonzero(pixels > INK_LEVEL)
    if rows.size == 0:
        return pixels.copy()
    crop = pixels[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    box = max(1, round(BOX_FRACTION * min(height, width)))
    scale = box / max(crop.shape)
    size = (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale)))
    small = np.asarray(Image.fromarray(crop).resize(size, Image.Resampling.LANCZOS))
    frame = np.zeros((height, width), dtype=np.float64)
    top, left = (height - small.shape[0]) // 2, (width - small.shape[1]) // 2
    frame[top : top + small.shape[0], left : left + small.shape[1]] = small
    total = frame.sum()
    if total > 0:
        ys, xs = np.indices(frame.shape)
        dy = round((height - 1) / 2 - (ys * frame).sum() / total)
        dx = round((width - 1) / 2 - (xs * frame).sum() / total)
        frame = _shifted(frame, dy, dx)
    return np.clip(np.round(frame), 0, 255).astype(np.uint8)


def _shifted(frame: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """``frame`` moved by whole pixels, paper coming in at the edges (no wrap-around)."""
    out = np.zeros_like(frame)
    height, width = frame.shape
    src_y = slice(max(0, -dy), min(height, height - dy))
    src_x = slice(max(0, -dx), min(width, width - dx))
    dst_y = slice(max(0, dy), min(height, height + dy))
    dst_x = slice(max(0, dx), min(width, width + dx))
    out[dst_y, dst_x] = frame[src_y, src_x]
    return out
