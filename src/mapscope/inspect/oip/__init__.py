"""OIPs (original input patterns): images grown by gradient ascent that drive one map or node hard.

Small composable pieces, in the spirit of Lucent's optvis: ``start`` makes the initial noise,
``objectives`` says what to maximise, ``ascent`` runs the batched loop, ``strategies`` combines
them (plain, precursor, coarse-to-fine).
"""

from mapscope.inspect.oip.settings import STRATEGIES, OIPSettings
from mapscope.inspect.oip.strategies import OIPResult, run_oip

__all__ = ["STRATEGIES", "OIPResult", "OIPSettings", "run_oip"]
