"""Swapping modules into a network for a block: how a kind's fast path enters training and leaves
again, so that the model's own ``forward`` stays plain."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from torch import nn


@contextlib.contextmanager
def swapped(layers: nn.ModuleDict, swaps: dict[str, nn.Module]) -> Iterator[None]:
    """``layers`` with the ``swaps`` in place for the block, the originals back afterwards
    (also after an exception or Ctrl-C)."""
    originals = {name: layers[name] for name in swaps}
    for name, module in swaps.items():
        layers[name] = module
    try:
        yield
    finally:
        for name, module in originals.items():
            layers[name] = module
