"""Class probabilities for test images or for a PNG a user drew."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from mapscope.cnn.build import Network
from mapscope.data.bundle import DataBundle
from mapscope.data.folder import UNREADABLE_IMAGE
from mapscope.device import INFERENCE_BATCH
from mapscope.errors import DataError


@torch.no_grad()
def predict_proba(net: Network, inputs: np.ndarray, batch: int = INFERENCE_BATCH) -> np.ndarray:
    """Probabilities (N, classes) for prepared NCHW inputs; rows sum to 1."""
    net.eval()
    device = next(net.parameters()).device
    out = []
    for i in range(0, len(inputs), batch):
        xb = torch.from_numpy(inputs[i : i + batch]).to(device)
        out.append(net.probabilities(xb).cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, net.spec.n_classes), np.float32)


# a drawing is a few hundred pixels a side; anything this large is a mistake or an attack
MAX_PIXELS = 4096 * 4096


def _too_large(label: str, shape: str) -> DataError:
    return DataError(
        f"{label}: {shape}is too large for a drawing (at most {MAX_PIXELS} pixels; a huge "
        "image header is how decompression bombs work)."
    )


def read_drawing(path, size: int = 28, name: str | None = None) -> np.ndarray:
    """A user's image as a (1, size, size) uint8 image in MNIST convention (bright digit on
    dark). Drawings are usually dark ink on white paper, so an image whose border is bright is
    inverted; transparency is laid on the paper the ink is not, 16-bit images are scaled, and
    an image with nothing on it is refused rather than predicted. ``path`` may be an open
    binary file (an upload); ``name`` is what messages call it."""
    label = name or str(path)
    try:
        with warnings.catch_warnings():  # PIL warns of large images; the check below refuses
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(path)
    except Image.DecompressionBombError:
        image = None
    except UNREADABLE_IMAGE as exc:
        raise DataError(f"{label}: not a readable image ({exc}); give a PNG of a digit.") from exc
    if image is None:
        raise _too_large(label, "")
    with image:  # PIL reads lazily: the file is closed here, however the reading ends
        if image.width * image.height > MAX_PIXELS:
            raise _too_large(label, f"{image.width}x{image.height} pixels ")
        try:
            grey = _grey(image)
        except UNREADABLE_IMAGE as exc:
            raise DataError(f"{label}: the image data cannot be read ({exc}).") from exc
    small = Image.fromarray(grey).resize((size, size), Image.Resampling.LANCZOS)
    pixels = np.asarray(small, dtype=np.uint8)
    if int(pixels.max()) - int(pixels.min()) < 16:
        raise DataError(
            f"{label}: the image is blank (all pixels nearly equal after conversion); draw a "
            "digit in dark ink on a light background, or light on dark."
        )
    border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
    if border.mean() > 127:
        pixels, border = 255 - pixels, 255 - border
    # MNIST paper is exactly 0: a grey or dim background (a photo, a 16-bit scan) becomes 0 and
    # the brightest ink 255, or per-pixel scaling would read the background as strokes
    paper = float(np.median(border))
    ink = (pixels.astype(np.float64) - paper) * 255 / (float(pixels.max()) - paper)
    return np.clip(np.round(ink), 0, 255).astype(np.uint8)[None]


def _grey(image: Image.Image) -> np.ndarray:
    """Any PIL image as 8-bit grey: alpha composited, 16-bit and float images scaled."""
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        values = np.asarray(image, dtype=np.float64)
        low, high = values.min(), values.max()
        scaled = (values - low) / (high - low) * 255 if high > low else np.zeros_like(values)
        return scaled.astype(np.uint8)
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        rgba = np.asarray(image.convert("RGBA"), dtype=np.float64) / 255
        grey, alpha = rgba[..., :3].mean(-1), rgba[..., 3]
        ink = grey[alpha > 0.5]
        # lay the drawing on paper of the other brightness than its ink
        paper = 1.0 if ink.size and ink.mean() < 0.5 else 0.0
        return np.round((grey * alpha + paper * (1 - alpha)) * 255).astype(np.uint8)
    return np.asarray(image.convert("L"), dtype=np.uint8)


def predict_drawing(net: Network, bundle: DataBundle, path: str | Path) -> np.ndarray:
    return predict_proba(net, bundle.prepare(read_drawing(path), layout="nchw"))[0]
