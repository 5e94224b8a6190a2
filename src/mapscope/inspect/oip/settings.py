"""How an OIP search runs, as one validated settings object (like ``TrainConfig``): the CLI,
the atlas, ``mapscope match`` and the Python API all hand an ``OIPSettings`` down to
``run_oip``, which checks it once."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from mapscope.checks import Problems
from mapscope.inspect.oip.ascent import DEFAULT_STEPS
from mapscope.inspect.oip.start import DEFAULT_FACTORS, DEFAULT_SCALES

STRATEGIES = ("plain", "precursor", "coarse-to-fine")


@dataclass(frozen=True)
class OIPSettings:
    strategy: str = "plain"  # plain, precursor or coarse-to-fine (``strategies.py``)
    steps: int = DEFAULT_STEPS  # gradient-ascent steps at most
    epsilon: float = 0.01  # step size on the standardised image
    scales: tuple[int, ...] = DEFAULT_SCALES  # noise wavelengths of the start image
    factors: tuple[float, ...] = DEFAULT_FACTORS  # the weight of each scale
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
        problems.finite("tol", self.tol)
        if not all(0 <= f < math.inf for f in self.factors):
            problems.add(f"factors must be finite numbers >= 0, got {list(self.factors)}")
        problems.seed("seed", self.seed)
        problems.raise_any()
        return self
