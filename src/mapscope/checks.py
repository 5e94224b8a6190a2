"""Checking a set of settings and reporting every problem at once.

The config dataclasses (``TrainConfig``, ``MLPConfig``) and the OIP search validate their
fields with one ``Problems`` each, so the same kind of value gets the same rule and the same
words everywhere, and a user with three mistakes learns of all three in one ``ConfigError``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from mapscope.errors import ConfigError

LARGEST_SEED = 2**32 - 1  # what numpy, torch and scikit-learn all accept
LARGEST_INT = 2**31 - 1  # no count, index or size in mapscope comes near; numpy's int32 limit


class Problems:
    def __init__(self) -> None:
        self.found: list[str] = []

    def add(self, message: str) -> None:
        self.found.append(message)

    def choice(self, name: str, value: Any, allowed: Iterable[str]) -> None:
        allowed = tuple(allowed)
        if value not in allowed:
            self.add(f"{name} {value!r} unknown; choose one of {', '.join(allowed)}")

    def at_least(self, name: str, value: int | None, low: int, optional: bool = False) -> None:
        """A count ``>= low``; ``optional`` counts may also be None (left out)."""
        if value is None and optional:
            return
        if value < low:
            left_out = " (or left out)" if optional else ""
            self.add(f"{name} must be >= {low}{left_out}, got {value}")

    def finite(self, name: str, value: float, low: float = 0.0, strict: bool = False) -> None:
        """A finite number above ``low`` (``strict``) or at least ``low``; NaN never passes."""
        ok = low < value < math.inf if strict else low <= value < math.inf
        if not ok:
            self.add(
                f"{name} must be a finite number {'>' if strict else '>='} {low:g}, got {value}"
            )

    def fraction(self, name: str, value: float) -> None:
        if not 0 <= value < 1:
            self.add(f"{name} must be in [0, 1), got {value}")

    def seed(self, name: str, value: int) -> None:
        if not 0 <= value <= LARGEST_SEED:
            self.add(f"{name} must be in 0..{LARGEST_SEED}, got {value}")

    def raise_any(self) -> None:
        if self.found:
            raise ConfigError("; ".join(self.found) + ".")
