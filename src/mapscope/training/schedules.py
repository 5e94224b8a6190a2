"""Learning rate as a pure function of the global step, so a resumed run continues exactly."""

from __future__ import annotations

import math

from mapscope.errors import ConfigError

SCHEDULES = ("none", "power", "exponential", "onecycle")
# the decay rate a schedule uses when none is given: power as in the original experiments,
# exponential halving the rate every decay_steps (a rate of 1 would never decay)
DEFAULT_DECAY_RATES = {"power": 1.0, "exponential": 0.5}


def decay_rate_of(schedule: str, decay_rate: float | None) -> float:
    return DEFAULT_DECAY_RATES.get(schedule, 1.0) if decay_rate is None else decay_rate


def learning_rate(
    schedule: str,
    lr0: float,
    step: int,
    total_steps: int,
    decay_rate: float | None,
    decay_steps: int,
) -> float:
    """``power`` is the inverse-time decay lr0 / (1 + rate * step / decay_steps) of the original
    experiments; ``exponential`` is lr0 * rate ** (step / decay_steps); ``onecycle`` warms up for
    the first 25 % of ``total_steps`` from lr0/25 to lr0, then anneals (cosine) to lr0/1e4.
    ``decay_rate`` None: the schedule's default (``DEFAULT_DECAY_RATES``)."""
    decay_rate = decay_rate_of(schedule, decay_rate)
    if schedule == "none":
        return lr0
    if schedule == "power":
        return lr0 / (1.0 + decay_rate * step / decay_steps)
    if schedule == "exponential":
        return lr0 * decay_rate ** (step / decay_steps)
    if schedule == "onecycle":
        warm = max(1, int(0.25 * total_steps))
        if step < warm:
            return lr0 / 25 + (lr0 - lr0 / 25) * step / warm
        progress = min(1.0, (step - warm) / max(1, total_steps - warm))
        low = lr0 / 1e4
        return low + (lr0 - low) * 0.5 * (1 + math.cos(math.pi * progress))
    raise ConfigError(f"schedule {schedule!r} unknown; choose one of {', '.join(SCHEDULES)}.")
