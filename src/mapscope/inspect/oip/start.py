"""Start images: random fluctuations on several length scales, superposed and standardised.

Coarse grids give long wavelengths (blobs), fine grids short ones (speckle). Each grid holds
uniform noise in [-1, 1], is scaled up to the image size by bicubic antialiased interpolation,
weighted by its amplitude factor, and the sum is standardised to mean 0, std 1 per image.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from mapscope.errors import ConfigError
from mapscope.inspect.oip.settings import DEFAULT_FACTORS, DEFAULT_SCALES


def standardize(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    flat = x.flatten(1)
    mean = flat.mean(1).view(-1, 1, 1, 1)
    std = flat.std(1, unbiased=False).view(-1, 1, 1, 1)
    return (x - mean) / (std + eps)


def upscale(grid: torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    """Bicubic enlargement of noise grids to the image size (square ``size`` or (H, W))."""
    size = (size, size) if isinstance(size, int) else tuple(size)
    if tuple(grid.shape[-2:]) == size:
        return grid
    return F.interpolate(grid, size=size, mode="bicubic", align_corners=False, antialias=True)


def check_scales(scales: Sequence[int], factors: Sequence[float], size) -> None:
    size = size if isinstance(size, int) else min(size)
    if not scales or len(scales) != len(factors):
        raise ConfigError(
            f"--scales and --factors need the same, non-zero length; got {list(scales)} and "
            f"{list(factors)}."
        )
    if any(s < 1 or s > size for s in scales):
        raise ConfigError(
            f"every scale must lie in 1..{size} (grid size of the noise), got {list(scales)}."
        )


def multiscale_noise(
    n: int,
    generator: torch.Generator,
    size: int | tuple[int, int] = 28,
    scales: Sequence[int] = DEFAULT_SCALES,
    factors: Sequence[float] = DEFAULT_FACTORS,
    channels: int = 1,
) -> torch.Tensor:
    """(n, channels, H, W) standardised start images (``size``: H = W, or (H, W)); every
    channel gets noise of its own, so a colour network starts from coloured noise."""
    check_scales(scales, factors, size)
    height, width = (size, size) if isinstance(size, int) else size
    total = torch.zeros(n, channels, height, width)
    for scale, factor in zip(scales, factors, strict=True):
        grid = torch.rand(n, channels, scale, scale, generator=generator) * 2 - 1
        total += factor * upscale(grid, (height, width))
    return standardize(total)


def lowpass(x: torch.Tensor, scale: int) -> torch.Tensor:
    """Keep only fluctuations representable on a ``scale`` x ``scale`` grid."""
    size = tuple(x.shape[-2:])
    if scale >= min(size):
        return x
    coarse = F.interpolate(x, size=(scale, scale), mode="area")
    return upscale(coarse, size)


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """(B, C, H, W) blurred by a Gaussian of ``sigma`` pixels, each channel apart, edges
    replicated: the smoothness prior of an OIP search (the gradient of every step is blurred,
    as Yosinski et al. 2015 blur the image), so a unit without spatial structure of its own
    (an MLP's) is shown as strokes rather than pixel noise."""
    radius = max(1, int(3 * sigma + 0.5))
    taps = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    kernel = torch.exp(-(taps**2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    channels = x.shape[1]
    rows = kernel.view(1, 1, -1, 1).repeat(channels, 1, 1, 1)
    cols = kernel.view(1, 1, 1, -1).repeat(channels, 1, 1, 1)
    x = F.pad(x, (radius, radius, radius, radius), mode="replicate")
    return F.conv2d(F.conv2d(x, rows, groups=channels), cols, groups=channels)
