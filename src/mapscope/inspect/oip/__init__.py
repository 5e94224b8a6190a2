"""OIPs (original input patterns): images grown by gradient ascent that drive one map or node hard.

Small composable pieces, in the spirit of Lucent's optvis: ``start`` makes the initial noise,
``objectives`` says what to maximise, ``ascent`` runs the batched loop, ``strategies`` combines
them (plain, precursor, coarse-to-fine). ``OIPResult`` and ``run_oip`` are imported from here
when first used, so that reading the settings (``settings``) does not load torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from mapscope.inspect.oip.settings import STRATEGIES, OIPSettings

if TYPE_CHECKING:
    from mapscope.inspect.oip.strategies import OIPResult, run_oip

__all__ = ["STRATEGIES", "OIPResult", "OIPSettings", "run_oip"]


def __getattr__(name: str):
    if name in ("OIPResult", "run_oip"):
        return getattr(importlib.import_module("mapscope.inspect.oip.strategies"), name)
    raise AttributeError(f"module 'mapscope.inspect.oip' has no attribute {name!r}")
