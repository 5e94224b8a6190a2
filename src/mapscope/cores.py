"""How many cores this process may run on, without importing torch: the background compile
counts them before it imports torch (to start its helper at once), and a sweep's worker
processes before they need it."""

from __future__ import annotations

import os


def usable_cores() -> int:
    """The cores this process may run on (its affinity where the system tells it)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0)) or 1
    return os.cpu_count() or 1
