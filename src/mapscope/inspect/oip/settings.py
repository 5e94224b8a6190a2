"""How an OIP search runs, as one validated settings object (like ``TrainConfig``): the CLI,
the atlas, ``mapscope match`` and the Python API all hand an ``OIPSettings`` down to
``run_oip``, which checks it once. It needs no torch, so the command line offers its defaults
without loading it."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from mapscope.checks import Problems

if TYPE_CHECKING:
    from torch import nn

STRATEGIES = ("plain", "precursor", "coarse-to-fine")
DEFAULT_STEPS = 600
DEFAULT_SCALES = (3, 7, 14, 28)  # wavelengths in pixels of the start image's noise
DEFAULT_FACTORS = (0.5, 0.5, 0.5, 0.5)  # the weight of each


@dataclass(frozen=True)
class OIPSettings:
    strategy: str = "plain"  # plain, precursor or coarse-to-fine (``strategies.py``)
    steps: int = DEFAULT_STEPS  # gradient-ascent steps at most
    epsilon: float = 0.01  # step size on the standardised image
    scales: tuple[int, ...] = DEFAULT_SCALES  # noise wavelengths of the start image
    factors: tuple[float, ...] = DEFAULT_FACTORS  # the weight of each scale
    # the start noise's spread on the standardised image (1: the usual noise; 0.1: a faint
    # start, so the ascent's own pattern dominates the picture)
    start_level: float = 1.0
    smooth: float = 0.0  # sigma in pixels of a Gaussian blur of every step's gradient; 0: none
    seed: int = 0
    retries: int = 5  # fresh starts for a unit that does not react at all
    precursors: int = 16  # start images tried per unit (precursor strategy)
    tol: float = 1e-3  # stop a unit when its relative gain over ``patience`` steps is below
    patience: int = 20
    device: str = "auto"  # auto (a GPU when torch sees one), cpu or cuda

    def with_options(self, **options) -> OIPSettings:
        """These settings with some changed (``steps=30``), checked."""
        return replace(self, **options).validate()

    def validate(self) -> OIPSettings:
        """Every setting against its allowed values; all problems in one ConfigError; returns
        the settings it checked."""
        problems = Problems()
        problems.choice("strategy", self.strategy, STRATEGIES)
        for name, low in (("steps", 1), ("precursors", 1), ("patience", 1), ("retries", 0)):
            problems.at_least(name, getattr(self, name), low)
        problems.finite("epsilon", self.epsilon, strict=True)
        problems.finite("start_level", self.start_level, strict=True)
        problems.finite("smooth", self.smooth)
        problems.finite("tol", self.tol)
        if not all(0 <= f < math.inf for f in self.factors):
            problems.add(f"factors must be finite numbers >= 0, got {list(self.factors)}")
        problems.seed("seed", self.seed)
        problems.raise_any()
        return self


def settings_for(net: nn.Module, settings: OIPSettings) -> OIPSettings:
    """``settings`` suited to ``net``: a network without convolutions (an MLP) sees the image
    as one weighted sum with no notion of neighbouring pixels, and its plain OIPs look like
    noise; it gets a faint start (0.1) and a smoothness prior (the gradient blurred by 1 pixel),
    which costs its hidden units a few percent of activation and shows strokes instead. Settings
    already away from the defaults are kept."""
    from torch import nn

    if any(isinstance(m, nn.Conv2d) for m in net.modules()):
        return settings
    if settings.start_level != 1.0 or settings.smooth != 0.0:
        return settings
    return settings.with_options(start_level=0.1, smooth=1.0)
