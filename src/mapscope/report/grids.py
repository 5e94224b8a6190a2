"""Display layout: arranging the maps of a layer into one picture, and their display scale."""

from __future__ import annotations

import numpy as np


def display_scale(maps: np.ndarray, standardize: bool) -> np.ndarray:
    """Values for display. ``standardize``: each map to mean 128, std 64, clipped to 0..255, which
    makes weak maps visible (a constant map, often all zero, has nothing to show and goes to 0,
    the bottom of the scale, not to the middle); otherwise the raw activations."""
    if not standardize:
        return maps.astype(np.float32)
    flat = maps.reshape(len(maps), -1).astype(np.float32)
    std = flat.std(axis=1, keepdims=True)
    scaled = 128 + 64 * (flat - flat.mean(axis=1, keepdims=True)) / np.where(std > 0, std, 1)
    scaled = np.where(std > 0, scaled, 0.0)
    return np.clip(scaled, 0, 255).reshape(maps.shape)


def mosaic(
    tiles: np.ndarray, per_row: int = 8, gap: int = 1
) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Tiles (N, H, W) in rows of ``per_row`` separated by NaN gaps (drawn as thin lines); the
    first row starts after a gap too, so that a label fits above every tile.

    Returns the mosaic and the top-left (row, col) of each tile, for labelling.
    """
    n, h, w = tiles.shape
    rows = -(-n // per_row)
    cols = min(per_row, n)
    out = np.full((rows * (h + gap), cols * (w + gap) - gap), np.nan, dtype=np.float32)
    corners = []
    for k in range(n):
        r, c = divmod(k, per_row)
        top, left = gap + r * (h + gap), c * (w + gap)
        out[top : top + h, left : left + w] = tiles[k]
        corners.append((top, left))
    return out, corners
