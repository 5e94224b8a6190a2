"""Class probabilities for test images or for a PNG a user drew."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from mapscope.cnn.build import Network
from mapscope.data.bundle import DataBundle
from mapscope.errors import DataError


@torch.no_grad()
def predict_proba(net: Network, inputs: np.ndarray, batch: int = 1000) -> np.ndarray:
    """Probabilities (N, classes) for prepared NCHW inputs; rows sum to 1."""
    net.eval()
    device = next(net.parameters()).device
    out = []
    for i in range(0, len(inputs), batch):
        xb = torch.from_numpy(inputs[i : i + batch]).to(device)
        out.append(net.probabilities(xb).cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, net.spec.n_classes), np.float32)


def read_drawing(path: str | Path, size: int = 28) -> np.ndarray:
    """A user's PNG as a (1, size, size) uint8 image in MNIST convention (bright digit on dark).

    Drawings are usually dark ink on white paper, so an image whose border is bright is inverted.
    """
    try:
        image = Image.open(path).convert("L")
    except (OSError, UnidentifiedImageError) as exc:
        raise DataError(f"{path}: not a readable image ({exc}); give a PNG of a digit.") from exc
    pixels = np.asarray(image.resize((size, size), Image.Resampling.LANCZOS), dtype=np.uint8)
    border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
    if border.mean() > 127:
        pixels = 255 - pixels
    return pixels[None]


def predict_drawing(net: Network, bundle: DataBundle, path: str | Path) -> np.ndarray:
    return predict_proba(net, bundle.prepare(read_drawing(path), layout="nchw"))[0]
