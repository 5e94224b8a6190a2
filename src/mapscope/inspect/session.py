"""A trained CNN together with its exact inputs: what every inspection starts from."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mapscope.cnn.build import Network
from mapscope.cnn.checkpoint import load_model
from mapscope.data.bundle import DataBundle
from mapscope.inspect.taps import layer_outputs


@dataclass
class Inspection:
    net: Network
    bundle: DataBundle

    @classmethod
    def open(cls, run_dir: str | Path, data_root: str | Path | None = None) -> Inspection:
        return cls(load_model(run_dir), DataBundle.from_run(run_dir, data_root))

    def activations(self, layer: str, part: str, indices) -> np.ndarray:
        return layer_outputs(self.net, self.bundle.inputs(part, indices, layout="nchw"), [layer])[
            layer
        ]

    def titles(self, part: str, indices) -> list[str]:
        names = self.bundle.dataset.class_names
        return [
            f"{part} #{i}: {names[y]}"
            for i, y in zip(indices, self.bundle.labels(part, indices), strict=True)
        ]
