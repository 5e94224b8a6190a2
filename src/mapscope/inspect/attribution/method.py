"""What one attribution method is: a name, a title for pictures, whether its maps have a sign
worth showing, and one function from a ``Problem`` to maps."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class Problem:
    """One attribution question: which pixels of ``inputs`` the score of class ``targets``
    depends on, for ``net``; ``baseline`` is the blank image in the network's own input scale."""

    net: nn.Module
    inputs: torch.Tensor  # prepared inputs, NCHW or flat for an MLP
    targets: torch.Tensor  # (N,) class whose score is explained
    baseline: torch.Tensor  # same shape as inputs
    image_shape: tuple[int, int, int]  # (C, H, W): how a flat input is drawn
    layers: list[str]  # layer names Grad-CAM may choose its default layer from
    layer: str | None = None  # Grad-CAM's layer (set when chosen by default)
    steps: int = 50  # integrated gradients' path steps


@dataclass(frozen=True)
class AttributionMethod:
    name: str  # what --method takes
    title: str  # how pictures and pages name it
    signed: bool  # maps with a sign (red helps the score, blue hurts it) or magnitudes
    compute: Callable[[Problem], torch.Tensor]
