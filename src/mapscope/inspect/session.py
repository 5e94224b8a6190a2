"""A network together with its exact inputs: what every inspection starts from.

``Inspection`` knows nothing of run folders: build it from any ``nn.Module`` and a
``DataBundle``, or from a run with ``Run.open(dir).inspection()``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from torch import nn

from mapscope.data.bundle import DataBundle
from mapscope.inspect.taps import layer_names, layer_outputs


@dataclass
class Inspection:
    net: nn.Module
    bundle: DataBundle

    @property
    def layer_names(self) -> list[str]:
        return layer_names(self.net)

    def inputs(self, part: str, indices=None) -> np.ndarray:
        """Prepared inputs in the layout the network reads (images: NCHW)."""
        layout = "nchw" if self.bundle.dataset.is_image else "flat"
        return self.bundle.inputs(part, indices, layout=layout)

    def activations(self, layer: str, part: str, indices) -> np.ndarray:
        return layer_outputs(self.net, self.inputs(part, indices), [layer])[layer]

    def titles(self, part: str, indices) -> list[str]:
        names = self.bundle.dataset.class_names
        return [
            f"{part} #{i}: {names[y]}"
            for i, y in zip(indices, self.bundle.labels(part, indices), strict=True)
        ]
